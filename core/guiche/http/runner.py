"""The app runner `guiche web` and `guiche run` serve with: aiohttp's, except that the
errors its HTTP parser answers itself (a request line or header over 8 KiB, a malformed
request) come in the API's JSON error shape instead of `text/plain`.

Those requests never reach the app, so no middleware can shape their answer; the
protocol handler's `handle_error` is the one place that can.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from guiche.foundation.jsonio import dumps


class JsonErrorRequestHandler(RequestHandler):
    """Protocol-level errors as `{"error": {"code", "message", "details"}}`."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own handler logs, and refuses when a response already started.
        super().handle_error(request, status, exc, message)
        if status >= 500:
            code, text = "internal_error", "The server failed to handle the request."
        else:
            code = "malformed_http_request"
            text = "The HTTP request could not be read: " + (
                message or HTTPStatus(status).phrase
            )
        body = {"error": {"code": code, "message": text[:500], "details": {}}}
        response = web.Response(status=status, body=dumps(body), content_type="application/json")
        response.force_close()
        return response


class _JsonErrorServer(Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class GuicheAppRunner(web.AppRunner):
    """`web.AppRunner` whose connections use `JsonErrorRequestHandler`."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server


def app_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    return GuicheAppRunner(app, **kwargs)
