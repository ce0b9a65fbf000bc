"""The plugin's tasks: the delivery pass (every second, and on new events) and the
delivery log's retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from guiche_webhooks import store
from guiche_webhooks.delivery import deliver_due, enabled_settings

#: A wake-up per process at most this often: a burst of messages is one pass, not many.
#: A wake-up inside the interval is deferred to its end (once), so the burst's last
#: events do not wait for the next scheduled pass.
WAKE_INTERVAL = 0.2
_wake = {"last": 0.0, "deferred": False}


async def deliver(services: Any) -> int:
    """`webhooks.deliver`: one pass over the due subscriptions."""
    return await deliver_due(services)


async def purge(services: Any) -> int:
    """`webhooks.purge`: drop delivery-log rows older than each company's retention."""
    now = dt.datetime.now(dt.UTC)
    removed = 0
    for tenant, settings in (await enabled_settings(services)).items():
        cutoff = now - dt.timedelta(days=settings.log_retention_days)
        removed += await store.purge_deliveries(services, tenant, cutoff)
    return removed


async def wake(ctx: Any) -> None:
    """A company's event arrived: start a pass now rather than at the next tick."""
    services = ctx.services
    since = time.monotonic() - _wake["last"]
    if since >= WAKE_INTERVAL:
        _wake["last"] = time.monotonic()
        await services.tasks.kick("webhooks.deliver")
    elif not _wake["deferred"]:
        _wake["deferred"] = True
        services.spawn(_deferred(services, WAKE_INTERVAL - since), "webhooks.wake")


async def _deferred(services: Any, delay: float) -> None:
    await asyncio.sleep(delay)
    _wake["deferred"] = False
    _wake["last"] = time.monotonic()
    await services.tasks.kick("webhooks.deliver")
