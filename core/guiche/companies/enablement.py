"""Which plugins a tenant has enabled, and with which settings: enablement is data."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from guiche.models import TenantPlugin
from guiche.runtime.cache import TENANT_PLUGINS, invalidate, runtime_cache

if TYPE_CHECKING:
    from guiche.runtime.services import Services


async def enabled_settings(services: Services, tenant_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """Stored settings of every plugin the tenant has enabled (plugin → settings).

    Read on every webhook, send and hook call, so served from the process's cache
    (`guiche.runtime.cache`); `plugins_changed` drops it. Treat the result as read-only.
    """
    cache = runtime_cache(services)
    found: dict[str, dict[str, Any]] | None = cache.get(TENANT_PLUGINS, tenant_id)
    if found is None:
        generation = cache.generation
        rows = (
            await TenantPlugin.select(TenantPlugin.plugin, TenantPlugin.settings)
            .where((TenantPlugin.tenant == tenant_id) & (TenantPlugin.enabled == True))  # noqa: E712
            .output(load_json=True)
        )
        found = {row["plugin"]: dict(row["settings"] or {}) for row in rows}
        cache.put(TENANT_PLUGINS, tenant_id, found, generation)
    return found


async def plugins_changed(services: Services, tenant_id: uuid.UUID) -> None:
    """After a tenant's plugin enablement or settings commit: every process re-reads them."""
    await invalidate(services, TENANT_PLUGINS, tenant_id)
