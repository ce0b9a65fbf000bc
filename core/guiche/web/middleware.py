"""Turn every failure into the one JSON error shape, with the right status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from guiche.database.engine import database_unavailable
from guiche.foundation.errors import ApiError
from guiche.foundation.jsonio import json_response

log = logging.getLogger("guiche.web")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}

#: Seconds a client is told to wait when a backing store is away (Retry-After).
UNAVAILABLE_RETRY_AFTER = 5


def error_response(
    status: int,
    code: str,
    message: str,
    details: object = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return json_response(body, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        return error_answer(request, exc)


def error_answer(request: web.Request, exc: Exception) -> web.Response:
    """The JSON error for a failure (`error_middleware`'s, and `/ws`'s before its upgrade,
    which no middleware wraps); a redirect or an already-JSON HTTP error is raised on
    as it is."""
    if isinstance(exc, web.HTTPException) and (
        exc.status < 400 or exc.content_type == "application/json"
    ):
        raise exc
    if isinstance(exc, ApiError):
        return json_response(exc.body(), status=exc.status, headers=exc.headers)
    if isinstance(exc, web.HTTPException):
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        message = exc.reason if exc.status != 413 else "Request body too large"
        return error_response(
            exc.status, _HTTP_CODES.get(exc.status, "http_error"), message, None, headers
        )
    if database_unavailable(exc) or isinstance(exc, RedisConnectionError | RedisTimeoutError):
        # A database restart or failover is not a bug: say "try again shortly".
        log.warning("backing store unavailable on %s %s: %r", request.method, request.path, exc)
        return error_response(
            503,
            "unavailable",
            "Service temporarily unavailable, retry shortly",
            None,
            {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
        )
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal_error", "Internal server error")


def stepping_aside(paths: frozenset[str], middleware: Middleware) -> Middleware:
    """`middleware`, except on `paths`, where the request goes straight on.

    A plain function handing over the next handler's coroutine: no frame of it stays
    suspended while that runs. For `/ws`, whose upgrade request lives as long as the
    socket, the seven middlewares' suspended frames were ~3.5 KiB of every socket; the
    socket's handler does itself what it needs of them (auth, errors before upgrading)."""

    def dispatch(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if request.path in paths:
            return handler(request)
        return middleware(request, handler)

    return web.middleware(dispatch)  # type: ignore[arg-type]
