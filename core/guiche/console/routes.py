"""Serving the console: `/` (the page, or JSON for API clients), its static files, and
plugins' console pages, with a content security policy that allows only this origin."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from guiche.console.pages import PAGES_KEY
from guiche.console.pages import routes as page_routes
from guiche.foundation.errors import NotFound
from guiche.foundation.jsonio import json_response
from guiche.http.endpoint import PUBLIC, endpoint
from guiche.plugin_host.console_pages import collect_console_pages
from guiche.runtime.services import SERVICES
from guiche.web.openapi import DOCS_PATH, LANDING, OPENAPI_PATH

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/console"
_CACHE = "no-cache"  # revalidated each load (ETag / Last-Modified): a deploy shows at once
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def console_csp(request: web.Request) -> str:
    """Scripts, styles and API calls from this origin only; the socket on the same host."""
    host = request.host
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self'; "
        f"connect-src 'self' ws://{host} wss://{host}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


def _index_html() -> str:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    return html.replace("{{DOCS_PATH}}", DOCS_PATH).replace("{{OPENAPI_PATH}}", OPENAPI_PATH)


def wants_html(request: web.Request) -> bool:
    """Browsers ask for text/html; API clients (and `Accept: application/json`) get JSON."""
    return "text/html" in request.headers.get("Accept", "")


@endpoint(PUBLIC, summary="The console, or where the API and its docs are")
async def index(request: web.Request) -> web.StreamResponse:
    """`/` must not be a dead end: a browser gets the console, anything else JSON links."""
    if not wants_html(request):
        return json_response(LANDING)
    return web.Response(
        text=_index_html(),
        content_type="text/html",
        headers={"Content-Security-Policy": console_csp(request), "Cache-Control": _CACHE},
    )


def _file_response(request: web.Request, root: Path, name: str) -> web.StreamResponse:
    """A file under `root`, never outside it (no `..`, no symlink out, no dotfiles)."""
    if not name or any(part.startswith(".") or not part for part in name.split("/")):
        raise NotFound("No such console file")
    base = root.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise NotFound("No such console file")
    kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    headers = {
        "Cache-Control": _CACHE,
        "Content-Security-Policy": console_csp(request),
        "Content-Type": kind or "application/octet-stream",
    }
    return web.FileResponse(path, headers=headers)


@endpoint(PUBLIC, summary="A console file")
async def static_file(request: web.Request) -> web.StreamResponse:
    return _file_response(request, STATIC, request.match_info["name"])


@endpoint(PUBLIC, summary="A file of a plugin's console page")
async def plugin_file(request: web.Request) -> web.StreamResponse:
    pages = request.app[PAGES_KEY].get(request.match_info["plugin"])
    if not pages:
        raise NotFound("No such console file")
    name = request.match_info["name"]
    for root in {Path(page.static_dir) for page in pages}:
        try:
            return _file_response(request, root, name)
        except NotFound:
            continue
    raise NotFound("No such console file")


def setup_console(app: web.Application) -> None:
    """Mount the console and collect plugins' pages (a bad page fails start-up)."""
    app[PAGES_KEY] = collect_console_pages(app[SERVICES].plugins)
    app.router.add_get("/", index)
    app.router.add_get(PREFIX + "/plugins/{plugin}/{name:.+}", plugin_file)
    app.router.add_get(PREFIX + "/{name:.+}", static_file)
    app.add_routes(page_routes)
