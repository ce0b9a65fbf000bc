"""Declaring an API route: its permission and its pydantic models, in one decorator.

The declaration is data on the handler (`handler.__guiche_endpoint__`), so the RBAC
test and the OpenAPI generator read the same facts the request path enforces.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
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
    errors: tuple[int, ...] = ()
    """Statuses beyond those the declaration implies (e.g. 409), for the OpenAPI document."""


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
    or a ready `web.StreamResponse`.
    """
    spec = Endpoint(permission, body, query, response, status, summary, tags, content_type, errors)

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


async def read_json(request: web.Request) -> Any:
    if request.content_type not in ("application/json", "") and not request.content_type.endswith(
        "+json"
    ):
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
