"""Mounting plugin routes under one prefix per plugin, and gating them per tenant.

aiohttp's router is frozen once the app runs, so every installed plugin's routes are
mounted in the factory and enablement (which is data) is checked per request: a
tenant that has not enabled a plugin gets 404 from its routes.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import AbstractRoute

from guiche.auth.principal import PRINCIPAL_KEY
from guiche.companies.enablement import enabled_settings
from guiche.foundation.errors import NotFound
from guiche.plugin_host.context import PLUGIN_KEY, STATE_KEY, TenantPluginState
from guiche.plugin_host.registry import PluginRegistry
from guiche.runtime.services import services_of

API_PREFIX = "/api/v1/plugins"
WEBHOOK_PREFIX = "/webhooks"


@dataclass(frozen=True)
class MountedRoute:
    """Which plugin owns a mounted route, and whether tenants must have enabled it."""

    plugin: str
    gated: bool


PLUGIN_ROUTES = web.AppKey("guiche.plugin_routes", dict[AbstractRoute, MountedRoute])


def api_path(plugin: str, path: str) -> str:
    return f"{API_PREFIX}/{plugin}/{path}"


def webhook_path(plugin: str, path: str) -> str:
    return f"{WEBHOOK_PREFIX}/{plugin}/{path}"


def mount_plugin_routes(app: web.Application, registry: PluginRegistry) -> None:
    """Add every plugin's API and webhook routes, remembering each route's owner."""
    owners: dict[AbstractRoute, MountedRoute] = {}
    for plugin, specs in registry.routes.items():
        for spec in specs:
            name = f"plugin.{plugin}.{spec.name}" if spec.name else None
            route = app.router.add_route(
                spec.method, api_path(plugin, spec.path), spec.handler, name=name
            )
            owners[route] = MountedRoute(plugin, gated=True)
    for plugin, hooks in registry.webhook_routes.items():
        for hook in hooks:
            route = app.router.add_route(hook.method, webhook_path(plugin, hook.path), hook.handler)
            owners[route] = MountedRoute(plugin, gated=False)
    app[PLUGIN_ROUTES] = owners


@web.middleware
async def plugin_gate_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """404 on a plugin's API routes for a tenant that has not enabled the plugin.

    Unauthenticated calls pass through, so the route's endpoint answers 401 as usual.
    """
    owners = request.app.get(PLUGIN_ROUTES)
    owner = owners.get(request.match_info.route) if owners else None
    if owner is None:
        return await handler(request)
    request[PLUGIN_KEY] = owner.plugin
    principal = request.get(PRINCIPAL_KEY)
    if owner.gated and principal is not None:
        enabled = await enabled_settings(services_of(request), principal.tenant_id)
        if owner.plugin not in enabled:
            raise NotFound(
                f"Plugin {owner.plugin!r} is not enabled for this company",
                code="plugin_not_enabled",
                details={"plugin": owner.plugin},
            )
        request[STATE_KEY] = TenantPluginState(enabled=True, settings=dict(enabled[owner.plugin]))
    return await handler(request)
