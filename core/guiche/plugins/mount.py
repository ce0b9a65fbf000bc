"""Placeholder until implemented."""

from aiohttp import web
from aiohttp.typedefs import Handler


def mount_plugin_routes(app: web.Application, registry: object) -> None:
    return None


@web.middleware
async def plugin_gate_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)
