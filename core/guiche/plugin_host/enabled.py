"""Every company that enabled a plugin, with its validated settings: for periodic tasks.

A scheduled task runs once for the whole deployment; work that concerns companies must
act only for those that enabled the plugin, with each one's own settings. Companies
whose stored settings no longer validate are skipped (their hooks are skipped too).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError

from guiche.hookspecs import PluginContext
from guiche.plugin_host.context import make_context

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.plugins")

_ENABLED = """
SELECT tenant, settings FROM tenant_plugins WHERE plugin = $1 AND enabled ORDER BY tenant
"""


async def enabled_contexts(services: Services, plugin: str) -> list[PluginContext]:
    """A `PluginContext` per company that enabled `plugin` (valid settings only)."""
    async with services.db.transaction() as transaction:
        rows = await transaction.connection.fetch(_ENABLED, plugin)
    contexts: list[PluginContext] = []
    for row in rows:
        raw = row["settings"]
        if isinstance(raw, str):
            import orjson

            raw = orjson.loads(raw)
        try:
            contexts.append(make_context(services, row["tenant"], plugin, dict(raw or {})))
        except ValidationError:
            log.warning(
                "plugin settings invalid; skipped",
                extra={"plugin": plugin, "tenant_id": str(row["tenant"])},
            )
    return contexts
