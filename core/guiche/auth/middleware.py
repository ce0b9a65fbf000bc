"""Placeholder until implemented: resolves no principal."""

from aiohttp import web
from aiohttp.typedefs import Handler


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)
