"""What `guiche plugins` prints: installed plugins, the hooks they implement, who uses them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from guiche.models import TenantPlugin
from guiche.plugin_host.registry import PluginRegistry

log = logging.getLogger("guiche.plugin_host")

_COUNT_TIMEOUT_SECONDS = 5.0


async def describe_plugins(
    registry: PluginRegistry, *, with_counts: bool = True
) -> list[dict[str, Any]]:
    """One dict per installed plugin; `tenants_enabled` is None when the database is
    unreachable or not asked (`with_counts=False`: no database configured)."""
    counts = await _enabled_counts() if with_counts else None
    rows = []
    for name, info in registry.infos.items():
        rows.append(
            {
                "name": name,
                "version": info.version,
                "description": info.description,
                "api_version": info.api_version,
                "requires": list(info.requires),
                "hooks": registry.hook_names(name),
                "tenants_enabled": None if counts is None else counts.get(name, 0),
            }
        )
    return rows


async def _enabled_counts() -> dict[str, int] | None:
    """Tenants per enabled plugin, across all tenants (an operator's view, not an API)."""
    try:
        async with asyncio.timeout(_COUNT_TIMEOUT_SECONDS):
            rows = await TenantPlugin.raw(
                "SELECT plugin, count(*) AS n FROM tenant_plugins WHERE enabled GROUP BY plugin"
            )
    except Exception as exc:  # unreachable, not migrated, not configured: list without counts
        log.warning("plugin usage unavailable: database unreachable (%r)", exc)
        return None
    return {row["plugin"]: int(row["n"]) for row in rows}


def format_plugins_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table: name, version, tenants enabled, hooks implemented."""
    if not rows:
        return "No plugins installed."
    headers = ("NAME", "VERSION", "TENANTS", "HOOKS")
    body = [
        (
            row["name"],
            row["version"],
            "-" if row["tenants_enabled"] is None else str(row["tenants_enabled"]),
            ", ".join(hook.removeprefix("guiche_") for hook in row["hooks"]) or "-",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (headers, *body)) for i in range(len(headers) - 1)]
    lines = []
    for line in (headers, *body):
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(lines)
