"""Turn every failure into the one JSON error shape, with the right status."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler
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
    except ApiError as exc:
        return json_response(exc.body(), status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == "application/json":
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        message = exc.reason if exc.status != 413 else "Request body too large"
        return error_response(
            exc.status, _HTTP_CODES.get(exc.status, "http_error"), message, None, headers
        )
    except Exception as exc:
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
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "Internal server error")
