"""Building the `PluginContext` a hook or a plugin route sees: tenant, settings, services.

Settings are stored as JSON per (tenant, plugin) and validated with the plugin's own
pydantic model each time a context is built, so a plugin never sees unchecked data.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from guiche.auth.principal import current_principal
from guiche.foundation.errors import Conflict, pydantic_details
from guiche.hookspecs import PluginContext
from guiche.models import TenantPlugin
from guiche.runtime.services import Services, services_of

PLUGIN_KEY = web.RequestKey("guiche.plugin", str)
CONTEXT_KEY = web.RequestKey("guiche.plugin_context", PluginContext)


@dataclass(frozen=True)
class TenantPluginState:
    """One tenant's row for one plugin (absent row = disabled, default settings)."""

    enabled: bool
    settings: dict[str, Any]


STATE_KEY = web.RequestKey("guiche.plugin_state", TenantPluginState)


async def tenant_plugin_state(tenant_id: uuid.UUID, plugin: str) -> TenantPluginState:
    row = (
        await TenantPlugin.select(TenantPlugin.enabled, TenantPlugin.settings)
        .where((TenantPlugin.tenant == tenant_id) & (TenantPlugin.plugin == plugin))
        .output(load_json=True)
        .first()
    )
    if row is None:
        return TenantPluginState(enabled=False, settings={})
    return TenantPluginState(enabled=bool(row["enabled"]), settings=dict(row["settings"] or {}))


def plugin_logger(plugin: str) -> logging.Logger:
    return logging.getLogger(f"guiche.plugin.{plugin}")


def make_context(
    services: Services, tenant_id: uuid.UUID, plugin: str, raw_settings: dict[str, Any]
) -> PluginContext:
    """A context with validated settings (raises pydantic's ValidationError when they are not)."""
    settings = services.plugins.validate_settings(plugin, raw_settings)
    return PluginContext(
        tenant_id=tenant_id,
        plugin=plugin,
        settings=settings,
        services=services,
        logger=plugin_logger(plugin),
    )


async def context_for_request(request: web.Request) -> PluginContext:
    """The context of the plugin route serving `request`, for the caller's tenant.

    Reuses the settings the gate middleware read (from the process cache).
    """
    cached = request.get(CONTEXT_KEY)
    if cached is not None:
        return cached
    plugin = request.get(PLUGIN_KEY)
    if plugin is None:
        raise RuntimeError("plugin_context() is only available inside a plugin's own route")
    principal = current_principal(request)
    state: TenantPluginState | None = request.get(STATE_KEY)
    if state is None:
        state = await tenant_plugin_state(principal.tenant_id, plugin)
    try:
        ctx = make_context(services_of(request), principal.tenant_id, plugin, state.settings)
    except ValidationError as exc:
        raise Conflict(
            f"The settings stored for plugin {plugin!r} are no longer valid; update them",
            code="plugin_settings_invalid",
            details=pydantic_details(exc.errors()),
        ) from None
    request[CONTEXT_KEY] = ctx
    return ctx
