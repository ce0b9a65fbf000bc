"""Declaring an API route: its permission and its pydantic models, in one decorator.

The declaration is data on the handler (`handler.__guiche_endpoint__`), so the RBAC
test and the OpenAPI generator read the same facts the request path enforces.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from guiche.auth.principal import PRINCIPAL_KEY
from guiche.web.errors import (
    BadRequest,
    Forbidden,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    pydantic_details,
)
from guiche.web.jsonio import json_response

PUBLIC = "public"  # no authentication
AUTHENTICATED = "authenticated"  # any authenticated caller, no specific permission

Handler = Callable[..., Awaitable[Any]]


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
) -> Callable[[Handler], Handler]:
    """Wrap a handler `(request, *, body=..., query=...)` with auth, RBAC and validation.

    The handler returns a pydantic model, a dict/list (sent as JSON with `status`),
    or a ready `web.StreamResponse`.
    """
    spec = Endpoint(permission, body, query, response, status, summary, tags, content_type)

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            authorize(request, permission)
            kwargs: dict[str, Any] = {}
            if query is not None:
                kwargs["query"] = _validate(query, dict(request.query))
            if body is not None:
                kwargs["body"] = _validate(body, await read_json(request))
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


async def read_json(request: web.Request) -> Any:
    if request.content_type != "" and not is_json_media_type(request.content_type):
        raise UnsupportedMediaType("Send a JSON body (Content-Type: application/json)")
    raw = await request.read()
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("Body is not valid JSON", code="invalid_json", details=str(exc)) from None


def _validate(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            "Request validation failed", details=pydantic_details(exc.errors())
        ) from None
