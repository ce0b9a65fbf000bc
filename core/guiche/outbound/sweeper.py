"""The periodic jobs behind the outbox: re-kick what was lost, purge what expired.

`core.sweep_outbox` (every 30 s) re-enqueues outbox rows that have been due for longer
than `outbox_sweep_grace_seconds` and are not leased: a kick lost between commit and
enqueue, a retry whose timer died with its worker, a lease left by a killed worker.
Kicking a row twice is harmless, the send task's claim lets only one through.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from guiche.database.engine import connection
from guiche.media.files import purge_expired_media
from guiche.models import IdempotencyKey
from guiche.outbound import outbox
from guiche.outbound.service import kick_sends

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.outbound")

SWEEP_BATCH = 500


async def sweep_outbox(*, services: Services) -> int:
    """Re-enqueue stale outbox rows; returns how many were kicked."""
    stale = await outbox.due(services.settings.outbox_sweep_grace_seconds, SWEEP_BATCH)
    await kick_sends(services, stale)
    if stale:
        log.info("outbox sweep re-enqueued sends", extra={"count": len(stale)})
    return len(stale)


async def media_retention(*, services: Services) -> int:
    """Delete media files older than `media_retention_days`; returns how many."""
    removed = await purge_expired_media(services)
    if removed:
        log.info("expired media deleted", extra={"count": removed})
    return removed


async def purge_idempotency_keys(*, services: Services) -> int:
    """Forget Idempotency-Keys older than `idempotency_key_ttl_hours`; returns how many."""
    rows = await IdempotencyKey.raw(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => {})"
        " RETURNING 1 AS gone",
        services.settings.idempotency_key_ttl_hours,
    )
    return len(rows)


async def purge_provider_calls(*, services: Services) -> int:
    """The `core.purge_provider_calls` task: forget calls older than the retention."""
    async with connection(services.db) as conn:
        status = await conn.execute(
            "DELETE FROM provider_calls WHERE created_at < now() - make_interval(days => $1)",
            services.settings.provider_call_retention_days,
        )
    gone = int(status.split()[-1])
    if gone:
        log.info("old provider calls purged", extra={"count": gone})
    return gone
