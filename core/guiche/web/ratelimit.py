"""Placeholder until implemented."""

from aiohttp import web
from aiohttp.typedefs import Handler


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)
