"""Periodic conversation upkeep, run by the scheduler as core tasks.

`core.auto_close` closes conversations whose customer went silent for longer than their
company's `auto_close_hours`; `core.drain_queues` assigns waiting conversations that
nothing else picked up (a crash between an ingest's commit and its routing, an agent
freed while routing was down). Both are idempotent: they read state and act on it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from guiche.conversations.transitions import expire_idle
from guiche.routing.service import drain_queue
from guiche.specs import TaskSpec
from guiche.tenancy.settings import read_settings

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.conversations")

AUTO_CLOSE_INTERVAL_SECONDS = 300
DRAIN_INTERVAL_SECONDS = 30

_TENANTS_WITH_OPEN = """
SELECT t.id, t.settings FROM tenants t
WHERE EXISTS (
    SELECT 1 FROM conversations c
    WHERE c.tenant = t.id AND c.status IN ('BOT', 'PENDING', 'ACTIVE'))
"""

_TENANTS_WITH_QUEUE = """
SELECT DISTINCT tenant FROM conversations WHERE status = 'PENDING' AND assignee IS NULL
"""


async def auto_close(services: Services) -> int:
    """Expire idle conversations of every company, each by its own setting."""
    assert services.db.pool is not None, "tasks run with the services' resources open"
    rows = await services.db.pool.fetch(_TENANTS_WITH_OPEN)
    hours = {row["id"]: read_settings(row["settings"]).auto_close_hours for row in rows}
    closed = await expire_idle(services, hours)
    if closed:
        log.info("auto-closed idle conversations", extra={"closed": closed})
    return closed


async def drain_queues(services: Services) -> int:
    """Drain every company that has conversations waiting; one failing does not stop the rest."""
    assert services.db.pool is not None, "tasks run with the services' resources open"
    assigned = 0
    for row in await services.db.pool.fetch(_TENANTS_WITH_QUEUE):
        try:
            assigned += await drain_queue(services, row["tenant"])
        except Exception:
            log.exception("draining the queue failed", extra={"tenant_id": str(row["tenant"])})
    return assigned


CONVERSATION_TASKS: list[TaskSpec] = [
    TaskSpec("auto_close", auto_close, schedule=({"interval": AUTO_CLOSE_INTERVAL_SECONDS},)),
    TaskSpec("drain_queues", drain_queues, schedule=({"interval": DRAIN_INTERVAL_SECONDS},)),
]
