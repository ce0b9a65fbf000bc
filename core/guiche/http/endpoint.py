"""Declaring an API route: its permission and its pydantic models, in one decorator.

The declaration is data on the handler (`handler.__guiche_endpoint__`), so the RBAC
test and the OpenAPI generator read the same facts the request path enforces.

Input rules every route gets here, so no handler has to repeat them:
- a JSON body is validated in pydantic's strict mode as JSON (`0` is not a boolean,
  `false` not an integer, `"1"` not a number; UUIDs and datetimes are JSON strings);
- text Postgres cannot store is refused with a 422 naming the field: U+0000 anywhere in
  a body (values and keys, however deep) or a query parameter. Lone surrogates never
  get this far: a JSON body holding one is not valid UTF-8 (400 `invalid_json`), and
  undecodable bytes in a query string arrive as U+FFFD. Refusing, not cleaning, is the
  contract for API input: the caller learns which field to fix and nothing is stored
  different from what was sent (`guiche.foundation.pgtext` decides what is unstorable).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from guiche.auth.principal import PRINCIPAL_KEY
from guiche.foundation.errors import (
    BadRequest,
    Forbidden,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    pydantic_details,
)
from guiche.foundation.jsonio import json_response, validate_strict
from guiche.foundation.pgtext import has_unstorable

PUBLIC = "public"  # no authentication
AUTHENTICATED = "authenticated"  # any authenticated caller, no specific permission

Handler = Callable[..., Awaitable[Any]]

UNSTORABLE_MESSAGE = "contains text that cannot be stored (U+0000 or a lone surrogate)"


class RequestBody(BaseModel):
    """Base of JSON request bodies: an unknown field is an error, not silently dropped
    (a typo must not look like success). Nested input models set the same config."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Endpoint:
    permission: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    summary: str = ""
    tags: tuple[str, ...] = ()
    content_type: str = "application/json"
    errors: tuple[int, ...] = ()


def endpoint_of(handler: Any) -> Endpoint | None:
    return getattr(handler, "__guiche_endpoint__", None)


def endpoint(
    permission: str,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: Any = None,
    status: int = 200,
    summary: str = "",
    tags: tuple[str, ...] = (),
    content_type: str = "application/json",
    errors: tuple[int, ...] = (),
) -> Callable[[Handler], Handler]:
    """Wrap a handler `(request, *, body=..., query=...)` with auth, RBAC and validation.

    The handler returns a pydantic model, a dict/list (sent as JSON with `status`),
    or a ready `web.StreamResponse`. `errors` lists the error statuses the handler
    itself may answer beyond those the declaration implies (401/403 from the
    permission, 400/413/415/422 from a body, 404 from a path parameter), e.g. 409 for
    a duplicate, so the OpenAPI document lists every status the route can answer.
    """
    spec = Endpoint(
        permission, body, query, response, status, summary, tags, content_type, tuple(errors)
    )

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            authorize(request, permission)
            kwargs: dict[str, Any] = {}
            if query is not None:
                kwargs["query"] = _validate_query(query, request)
            if body is not None:
                kwargs["body"] = await _validate_body(body, request)
            result = await handler(request, **kwargs)
            if isinstance(result, web.StreamResponse):
                return result
            if result is None and status == 204:
                return web.Response(status=204)
            return json_response(result, status=status)

        wrapper.__guiche_endpoint__ = spec  # type: ignore[attr-defined]
        return wrapper

    return decorate


def authorize(request: web.Request, permission: str) -> None:
    if permission == PUBLIC:
        return
    principal = request.get(PRINCIPAL_KEY)
    if principal is None:
        raise Unauthorized("Authentication required", code="not_authenticated")
    if permission != AUTHENTICATED and not principal.can(permission):
        raise Forbidden(
            f"Missing permission {permission!r}",
            code="permission_denied",
            details={"permission": permission, "role": principal.role},
        )


def is_json_media_type(media_type: str) -> bool:
    """`application/json` or a `+json` type; parameters (`; charset=utf-8`) are already
    stripped by aiohttp's `request.content_type`."""
    return media_type == "application/json" or media_type.endswith("+json")


def require_media_type(request: web.Request, accepted: Collection[str]) -> None:
    """415 with the error shape unless the body is declared as one of `accepted` (JSON
    types count as `application/json`). For provider webhooks: a signed body sent as
    `text/plain` is not what any provider sends, so it is refused, not parsed; an
    undeclared body (none, or octet-stream) is left to the parser (and signature check)."""
    media_type = request.content_type
    if media_type == "application/octet-stream":
        return  # undeclared (aiohttp's name for no Content-Type, too): the parser decides
    if media_type in accepted or (
        "application/json" in accepted and is_json_media_type(media_type)
    ):
        return
    raise UnsupportedMediaType(
        f"Send the body as {' or '.join(sorted(accepted))} (got {media_type or 'none'})",
        details={"accepted": sorted(accepted), "content_type": media_type},
    )


async def _read_json(request: web.Request) -> Any:
    """The body parsed (`{}` when empty): 415 unless JSON, 400 unless valid JSON."""
    if request.content_type != "" and not is_json_media_type(request.content_type):
        raise UnsupportedMediaType("Send a JSON body (Content-Type: application/json)")
    raw = await request.read()
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("Body is not valid JSON", code="invalid_json", details=str(exc)) from None


async def _validate_body(model: type[BaseModel], request: web.Request) -> BaseModel:
    data = await _read_json(request)
    _refuse_unstorable(_unstorable_fields(data))
    try:
        return validate_strict(model, data)
    except ValidationError as exc:
        raise ValidationFailed(
            "Request validation failed", details=pydantic_details(exc.errors())
        ) from None


def _validate_query(model: type[BaseModel], request: web.Request) -> BaseModel:
    """Query strings are text: lax validation reads `?limit=10` and `?flag=true`."""
    params = dict(request.query)
    repeated = [name for name in params if len(request.query.getall(name)) > 1]
    if repeated:  # no query parameter is a list: which of two values was meant is unknown
        raise ValidationFailed(
            "Request validation failed",
            details=[
                {"field": name, "message": "given more than once", "type": "repeated"}
                for name in repeated
            ],
        )
    _refuse_unstorable(
        [name for name, value in params.items() if has_unstorable(name) or has_unstorable(value)]
    )
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise ValidationFailed(
            "Request validation failed", details=pydantic_details(exc.errors())
        ) from None


def _unstorable_fields(value: Any, path: str = "") -> list[str]:
    """Dotted paths (list items by index) of every string or key Postgres would refuse."""
    found: list[str] = []
    if isinstance(value, str):
        if has_unstorable(value):
            found.append(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if has_unstorable(key):
                found.append(here)
            found.extend(_unstorable_fields(item, here))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_unstorable_fields(item, f"{path}.{index}" if path else str(index)))
    return found


def _refuse_unstorable(fields: list[str]) -> None:
    if fields:
        raise ValidationFailed(
            "Request validation failed",
            code="unstorable_text",
            details=[
                {"field": field, "message": UNSTORABLE_MESSAGE, "type": "unstorable_text"}
                for field in dict.fromkeys(fields)
            ],
        )
