"""Pruning `message_keys` past the providers' redelivery horizon (`core.purge_message_keys`).

A key is the durable dedup of one provider message id: while it exists a redelivered
webhook, an echo or a re-run import stores nothing twice, a status finds its message
and a reply finds its target. Meta redelivers for up to 7 days, so keys claimed more
than `GUICHE_MESSAGE_KEYS_RETENTION_DAYS` ago (default 30; 0 keeps them forever) are
deleted, in batches so no single statement holds many row locks. After that a status
for such a message is parked and expires unapplied, a reply to it is stored without
its `reply_to`, and importing the same history again would store it again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from guiche.database.engine import connection

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.inbound")

BATCH = 10_000

_PRUNE = """
DELETE FROM message_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM message_keys
    WHERE claimed_at < now() - make_interval(days => $1)
    LIMIT $2))
"""


async def purge_message_keys(*, services: Services) -> int:
    """The `core.purge_message_keys` task: delete keys older than the retention; how many."""
    days = services.settings.message_keys_retention_days
    if days == 0:
        return 0
    total = 0
    async with connection(services.db) as conn:
        while True:
            status = await conn.execute(_PRUNE, days, BATCH)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < BATCH:
                break
    if total:
        log.info("message keys past their retention pruned", extra={"count": total, "days": days})
    return total
