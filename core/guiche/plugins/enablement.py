"""Which plugins a tenant has enabled, and with which settings: enablement is data."""

from __future__ import annotations

import uuid
from typing import Any

from guiche.models import TenantPlugin


async def is_enabled(tenant_id: uuid.UUID, plugin: str) -> bool:
    return await TenantPlugin.exists().where(
        (TenantPlugin.tenant == tenant_id)
        & (TenantPlugin.plugin == plugin)
        & (TenantPlugin.enabled == True)  # noqa: E712 - Piccolo builds SQL from ==
    )


async def enabled_plugins(tenant_id: uuid.UUID) -> set[str]:
    rows = await TenantPlugin.select(TenantPlugin.plugin).where(
        (TenantPlugin.tenant == tenant_id) & (TenantPlugin.enabled == True)  # noqa: E712
    )
    return {row["plugin"] for row in rows}


async def plugin_settings(tenant_id: uuid.UUID, plugin: str) -> dict[str, Any]:
    row = (
        await TenantPlugin.select(TenantPlugin.settings)
        .where((TenantPlugin.tenant == tenant_id) & (TenantPlugin.plugin == plugin))
        .output(load_json=True)
        .first()
    )
    return dict(row["settings"]) if row else {}
