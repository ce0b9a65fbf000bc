"""A plugin's context for one company outside a request (public as
`guiche.plugin.tenant_plugin_context`): background tasks that act per company — a
poller, a catalog job — need that company's validated settings, as routes and event
hooks get them.
"""

from __future__ import annotations

import uuid

from pydantic import ValidationError

from guiche.companies.enablement import enabled_settings
from guiche.hookspecs import PluginContext
from guiche.plugin_host.context import make_context, plugin_logger
from guiche.runtime.services import Services


async def tenant_plugin_context(
    services: Services, tenant_id: uuid.UUID, plugin: str
) -> PluginContext | None:
    """The context (tenant, validated settings, services, logger) of `plugin` for the
    company, or None when the company has not enabled it or its stored settings no
    longer validate (logged: the runner skips its hooks for the same reason). Served from
    the process's cache of enabled plugins, which every change drops."""
    stored = (await enabled_settings(services, tenant_id)).get(plugin)
    if stored is None:
        return None
    try:
        return make_context(services, tenant_id, plugin, stored)
    except ValidationError:
        plugin_logger(plugin).warning(
            "settings of plugin %s for tenant %s are invalid; skipped", plugin, tenant_id
        )
        return None
