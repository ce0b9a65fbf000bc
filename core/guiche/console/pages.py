"""`GET /api/v1/console/pages`: the plugin pages this caller may open in the console.

Installed plugins declare pages (`guiche_console_pages`); a page is listed only when the
caller's company enabled its plugin and the caller holds the page's permission, so any
frontend (not only ours) can build the same menu.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from guiche.auth.principal import current_principal
from guiche.companies.enablement import enabled_settings
from guiche.http.endpoint import AUTHENTICATED, endpoint
from guiche.plugin_host.console_pages import ConsolePage
from guiche.runtime.services import services_of

PAGES_KEY = web.AppKey("guiche.console.pages", dict[str, list[ConsolePage]])
routes = web.RouteTableDef()


class ConsolePageOut(BaseModel):
    plugin: str
    slug: str
    title: str
    titles: dict[str, str]
    module_url: str


class ConsolePageList(BaseModel):
    items: list[ConsolePageOut]
    next_cursor: str | None = None


@routes.get("/api/v1/console/pages")
@endpoint(
    AUTHENTICATED,
    response=ConsolePageList,
    summary="Plugin pages for the web console (enabled plugins, permitted pages)",
    tags=("console",),
)
async def list_pages(request: web.Request) -> ConsolePageList:
    principal = current_principal(request)
    enabled = await enabled_settings(services_of(request), principal.tenant_id)
    items = [
        ConsolePageOut(
            plugin=plugin,
            slug=page.slug,
            title=page.title,
            titles=dict(page.titles),
            module_url=f"/console/plugins/{plugin}/{page.module}",
        )
        for plugin, pages in sorted(request.app[PAGES_KEY].items())
        if plugin in enabled
        for page in pages
        if page.permission is None or principal.can(page.permission)
    ]
    return ConsolePageList(items=items)
