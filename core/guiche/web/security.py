"""Placeholder until implemented."""

from aiohttp import web
from aiohttp.typedefs import Handler


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)
