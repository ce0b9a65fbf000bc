"""Running async event hooks: only for plugins the tenant enabled, each with a timeout.

pluggy does not await, and `firstresult` would stop at an unawaited coroutine, so
core calls each implementation itself: one exception and timeout boundary per
plugin, so a slow or broken plugin is logged and counted but never stops the rest.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pluggy
from prometheus_client import Counter
from pydantic import ValidationError

from guiche.companies.enablement import enabled_settings
from guiche.hookspecs import EVENT_HOOKS
from guiche.plugin_host.context import PluginContext, make_context
from guiche.runtime.services import Services

log = logging.getLogger("guiche.plugin_host")

HOOK_FAILURES = Counter(
    "guiche_plugin_hook_failures_total",
    "Event hook calls that timed out, raised, or had invalid tenant settings",
    ["plugin", "hook", "reason"],
)

_FAILED = object()


class EventRunner:
    """Calls event hooks (`guiche_on_*`, `guiche_route_inbound`) for one tenant at a time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @property
    def timeout(self) -> float:
        return self.services.settings.event_hook_timeout_seconds

    async def emit(self, tenant_id: uuid.UUID, hook_name: str, **kwargs: Any) -> list[Any]:
        """Run every enabled plugin's implementation concurrently; return the non-None results
        of those that succeeded, in call order."""
        calls = await self._calls(tenant_id, hook_name, kwargs)
        results = await asyncio.gather(
            *(self._run(hook_name, impl, ctx, kwargs) for impl, ctx in calls)
        )
        return [result for result in results if result is not _FAILED and result is not None]

    async def first_result(self, tenant_id: uuid.UUID, hook_name: str, **kwargs: Any) -> Any:
        """Run implementations one by one in call order; the first non-None answer wins.

        A failing implementation is skipped (as if it answered None).
        """
        for impl, ctx in await self._calls(tenant_id, hook_name, kwargs):
            result = await self._run(hook_name, impl, ctx, kwargs)
            if result is not _FAILED and result is not None:
                return result
        return None

    async def _calls(
        self, tenant_id: uuid.UUID, hook_name: str, kwargs: dict[str, Any]
    ) -> list[tuple[pluggy.HookImpl, PluginContext]]:
        """(impl, ctx) for each implementation whose plugin the tenant has enabled."""
        registry = self.services.plugins
        if hook_name not in EVENT_HOOKS:
            raise ValueError(f"{hook_name!r} is not an event hook")
        expected = set(getattr(registry.pm.hook, hook_name).spec.argnames) - {"ctx"}
        if set(kwargs) != expected:
            raise TypeError(f"{hook_name} takes {sorted(expected)}, got {sorted(kwargs)}")
        impls = registry.event_impls(hook_name)
        if not impls:  # the common case costs no lookup at all
            return []
        enabled = await enabled_settings(self.services, tenant_id)  # cached per process
        calls: list[tuple[pluggy.HookImpl, PluginContext]] = []
        for impl in impls:
            plugin = impl.plugin_name
            if plugin not in enabled:
                continue
            try:
                ctx = make_context(self.services, tenant_id, plugin, enabled[plugin])
            except ValidationError as exc:
                _failed(plugin, hook_name, "settings", tenant_id, exc)
                continue
            calls.append((impl, ctx))
        return calls

    async def _run(
        self, hook_name: str, impl: pluggy.HookImpl, ctx: PluginContext, kwargs: dict[str, Any]
    ) -> Any:
        """Await one implementation inside its own timeout and exception boundary."""
        values = {**kwargs, "ctx": ctx}
        args = [values[name] for name in impl.argnames]  # an impl may take a subset
        try:
            async with asyncio.timeout(self.timeout):
                return await impl.function(*args)
        except TimeoutError as exc:
            _failed(ctx.plugin, hook_name, "timeout", ctx.tenant_id, exc)
        except Exception as exc:
            _failed(ctx.plugin, hook_name, "error", ctx.tenant_id, exc)
        return _FAILED


def _failed(
    plugin: str, hook_name: str, reason: str, tenant_id: uuid.UUID, exc: BaseException
) -> None:
    HOOK_FAILURES.labels(plugin=plugin, hook=hook_name, reason=reason).inc()
    log.error(
        "plugin %s: %s failed (%s) for tenant %s: %r",
        plugin,
        hook_name,
        reason,
        tenant_id,
        exc,
        exc_info=exc if reason == "error" else None,
        extra={"plugin": plugin, "hook": hook_name, "reason": reason, "tenant_id": str(tenant_id)},
    )
