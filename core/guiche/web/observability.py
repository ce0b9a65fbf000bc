"""Placeholder until implemented."""

from aiohttp import web
from aiohttp.typedefs import Handler


@web.middleware
async def request_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)


def setup_observability(app: web.Application) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/health", health)
