"""Browser-facing protections: security headers, CORS, and refusing oversized bodies early.

Both middlewares translate errors into responses themselves (through error_middleware),
so 4xx/5xx answers carry the same headers as successful ones: a cross-origin client can
read a 401, and an error page is as locked down as any other response.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from guiche.foundation.errors import Forbidden, PayloadTooLarge
from guiche.runtime.services import services_of
from guiche.web.middleware import error_middleware
from guiche.web.openapi import DOCS_PATH

# JSON needs no sources at all; the docs page loads its own script, styles and the spec.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"

CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_ALLOW_HEADERS = "Authorization, Content-Type, x-api-key, Idempotency-Key, X-Request-ID"
CORS_EXPOSE_HEADERS = "X-Request-ID, Retry-After, Content-Disposition"
CORS_MAX_AGE = "600"

# Upload routes (CSV imports) stream their body and enforce settings.max_import_bytes
# themselves, before reading; every other route gets settings.max_body_bytes.
STREAMED_UPLOAD_SUFFIXES = ("/import",)


def body_limit(request: web.Request) -> int | None:
    """The largest body this route accepts, or None where the handler enforces its own."""
    resource = request.match_info.route.resource
    if resource is not None and resource.canonical.endswith(STREAMED_UPLOAD_SUFFIXES):
        return None
    return services_of(request).settings.max_body_bytes


def _check_body_size(request: web.Request) -> None:
    """Refuse by the declared Content-Length before reading a byte of the body.

    Bodies without a length (chunked) are still capped while read (client_max_size).
    """
    length = request.content_length
    limit = body_limit(request)
    if length is not None and limit is not None and length > limit:
        raise PayloadTooLarge(
            "Request body too large", details={"max_bytes": limit, "content_length": length}
        )


def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    is_docs = request.path == DOCS_PATH or request.path.startswith(DOCS_PATH + "/")
    headers.setdefault("Content-Security-Policy", DOCS_CSP if is_docs else API_CSP)
    if request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")
    if request.secure:
        headers.setdefault("Strict-Transport-Security", HSTS)


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every response; 413 for a declared oversize body."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        _check_body_size(request)
        return await handler(request)

    response = await error_middleware(request, guarded)
    if not response.prepared:  # a stream or WebSocket has sent its headers already
        _security_headers(request, response)
    return response


def _is_preflight(request: web.Request) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def _add_vary_origin(response: web.StreamResponse) -> None:
    vary = response.headers.get("Vary")
    if vary is None:
        response.headers["Vary"] = "Origin"
    elif "origin" not in {part.strip().lower() for part in vary.split(",")}:
        response.headers["Vary"] = f"{vary}, Origin"


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS for the origins in settings.cors_origins (exact match, or `*` for any).

    Preflights are answered here, before auth; a disallowed origin gets no CORS headers,
    so the browser refuses to hand the response to its script.
    """
    origins = services_of(request).settings.cors_origins
    if not origins:
        return await handler(request)
    origin = request.headers.get("Origin")
    allowed = origin is not None and ("*" in origins or origin in origins)
    allow_origin = "*" if "*" in origins else (origin or "")
    if _is_preflight(request):
        if not allowed:
            raise Forbidden("Origin not allowed", code="cors_origin_denied")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": allow_origin,
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
                "Access-Control-Max-Age": CORS_MAX_AGE,
                "Vary": "Origin",
            },
        )
    response = await error_middleware(request, handler)
    if response.prepared:
        return response
    _add_vary_origin(response)
    if allowed:
        response.headers["Access-Control-Allow-Origin"] = allow_origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    return response
