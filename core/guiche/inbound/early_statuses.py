"""Provider reports that outrun our own send's commit.

The worker records a sent message's provider id in `message_keys` only after the send
call returns, and a provider may already have posted webhooks about that message by
then: a status (delivered, read, failed) or, for providers that echo our own sends as
`from_me` messages (Evolution's `send.message`), the message itself. Two fixes meet
when the sender records the key (`record_sent_key`, inside its `sent` transaction):

- A status ingest cannot match is *parked* in `early_statuses`; recording the key
  applies the parked statuses with ingest's own forward-only `apply_status` and
  deletes them. Statuses for ids that are never ours expire (`purge_early_statuses`).
- An echo that claimed the key first is merged into our message: the key (and any
  usage row or reply pointing at the echo) moves to ours — the usage row taking our
  message's `origin` —, the status the echo reached is carried over, the echo row is
  deleted, and a `message.merged` event tells clients to drop it. Echoes are the rows
  ingest stores for `from_me` messages: direction `out`, no sender,
  `payload.normalised.from_me` true.

Race-safety: ingest (before parking) and the sender (before claiming the key) take a
transaction-scoped advisory lock on (channel, provider id). Under READ COMMITTED the
statement after the lock sees whatever the other side committed, so a status parked
while the key is being recorded is applied, and one looked up while it is being
recorded finds the key.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from guiche.channels import (
    STATUS_RANK,
    DeliveryStatus,
    Pricing,
    ProviderError,
    StatusUpdate,
)
from guiche.foundation.jsonio import dumps_text
from guiche.models import Message
from guiche.realtime import events as ev
from guiche.realtime.events import PendingEvent

if TYPE_CHECKING:
    from guiche.channel_host.runtime import ChannelRow
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.inbound")

PARKED_TTL_HOURS = 24
"""How long a status waits for its message: far longer than any send call takes."""

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

_PARK = """
INSERT INTO early_statuses (channel, provider_message_id, status, error, timestamp, pricing)
VALUES ($1, $2, $3, $4::jsonb, $5, $6::jsonb)
ON CONFLICT (channel, provider_message_id, status) DO NOTHING
"""

_TAKE = """
DELETE FROM early_statuses WHERE channel = $1 AND provider_message_id = $2
RETURNING provider_message_id, status, error, timestamp, pricing
"""

_CLAIM_KEY = """
INSERT INTO message_keys (channel, provider_message_id, tenant, message_id, message_created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (channel, provider_message_id) DO NOTHING
RETURNING message_id
"""

# The echo holding our key: ingest's row for a `from_me` message in our conversation.
_ECHO = """
SELECT m.id, m.created_at, m.status, m.error
FROM message_keys k
JOIN messages m ON m.id = k.message_id AND m.created_at = k.message_created_at
WHERE k.channel = $1 AND k.provider_message_id = $2
  AND m.direction = 'out' AND m.sender IS NULL AND m.conversation = $3
  AND m.payload -> 'normalised' ->> 'from_me' = 'true'
FOR UPDATE OF k, m
"""

_MOVE_KEY = """
UPDATE message_keys SET message_id = $3, message_created_at = $4
WHERE channel = $1 AND provider_message_id = $2
"""

_MOVE_USAGE = """
UPDATE provider_usage
SET message_id = $3,
    origin = (SELECT origin FROM messages WHERE id = $3 AND created_at = $4)
WHERE channel = $1 AND provider_message_id = $2
"""

_MOVE_REPLIES = """
UPDATE messages SET reply_to = $3, updated_at = now() WHERE conversation = $1 AND reply_to = $2
"""

_DELETE_ECHO = "DELETE FROM messages WHERE id = $1 AND created_at = $2"


def lock_name(channel_id: uuid.UUID, provider_message_id: str) -> str:
    """The advisory lock's name for a provider id (the sender's SQL settle takes it too)."""
    return f"message_keys:{channel_id}:{provider_message_id}"


def _json(value: Any) -> str | None:
    return None if value is None else dumps_text(value)


def _loaded(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


async def lock_key(conn: Any, channel_id: uuid.UUID, provider_message_id: str) -> None:
    """Serialise with whoever else is matching this provider id (until commit)."""
    await conn.execute(_LOCK, lock_name(channel_id, provider_message_id))


async def park(conn: Any, channel_id: uuid.UUID, update: StatusUpdate) -> None:
    """Keep a status nobody can take yet (each status once per message; replays add nothing).

    Call with `lock_key` held, after looking the provider id up again.
    """
    await conn.execute(
        _PARK,
        channel_id,
        update.provider_message_id,
        update.status.value,
        _json(update.error.model_dump(mode="json") if update.error else None),
        update.timestamp,
        _json(
            update.pricing.model_dump(mode="json", exclude_none=True) if update.pricing else None
        ),
    )


async def take(conn: Any, channel_id: uuid.UUID, provider_message_id: str) -> list[StatusUpdate]:
    """Remove and return the statuses parked for a provider id, oldest first."""
    rows = await conn.fetch(_TAKE, channel_id, provider_message_id)
    updates = [
        StatusUpdate(
            provider_message_id=row["provider_message_id"],
            status=DeliveryStatus(row["status"]),
            timestamp=row["timestamp"],
            error=ProviderError.model_validate(_loaded(row["error"])) if row["error"] else None,
            pricing=Pricing.model_validate(_loaded(row["pricing"])) if row["pricing"] else None,
        )
        for row in rows
    ]
    return sorted(updates, key=lambda u: (u.timestamp, STATUS_RANK[u.status]))


async def record_sent_key(
    conn: Any, channel: ChannelRow, message: Mapping[str, Any], provider_message_id: str
) -> list[PendingEvent]:
    """Point `provider_message_id` at our sent message; returns the events to record.

    `message` is the sender's row (id, created_at, conversation, department, assignee).
    Call inside the transaction that marks it sent: it merges an echo that got the key
    first and applies statuses parked before this commit.
    """
    from guiche.inbound.ingest import apply_status  # ingest parks through this module

    await lock_key(conn, channel.id, provider_message_id)
    claimed = await conn.fetchval(
        _CLAIM_KEY,
        channel.id,
        provider_message_id,
        channel.tenant_id,
        message["id"],
        message["created_at"],
    )
    pending: list[PendingEvent] = []
    carried: list[StatusUpdate] = []
    if claimed is None:
        echo = await conn.fetchrow(_ECHO, channel.id, provider_message_id, message["conversation"])
        if echo is None:  # held by something that is not an echo of this send: leave it
            log.warning(
                "provider id already recorded for another message",
                extra={"message_id": str(message["id"]), "channel": str(channel.id)},
            )
            return pending
        pending.append(await _merge(conn, channel, message, provider_message_id, echo))
        if echo["status"] in (DeliveryStatus.DELIVERED, DeliveryStatus.READ, DeliveryStatus.FAILED):
            error = _loaded(echo["error"])
            carried.append(
                StatusUpdate(
                    provider_message_id=provider_message_id,
                    status=DeliveryStatus(echo["status"]),
                    timestamp=dt.datetime.now(dt.UTC),
                    error=ProviderError.model_validate(error) if error else None,
                )
            )
    for update in carried + await take(conn, channel.id, provider_message_id):
        outcome = await apply_status(conn, channel, update)
        if outcome.event is not None:
            pending.append(outcome.event)
    return pending


async def _merge(
    conn: Any,
    channel: ChannelRow,
    message: Mapping[str, Any],
    provider_message_id: str,
    echo: Mapping[str, Any],
) -> PendingEvent:
    """Make our message the one the provider id names, and drop the echo's row."""
    await conn.execute(
        _MOVE_KEY, channel.id, provider_message_id, message["id"], message["created_at"]
    )
    await conn.execute(
        _MOVE_USAGE, channel.id, provider_message_id, message["id"], message["created_at"]
    )
    await conn.execute(_MOVE_REPLIES, message["conversation"], echo["id"], message["id"])
    await conn.execute(_DELETE_ECHO, echo["id"], echo["created_at"])
    log.info(
        "provider echo merged into the sent message",
        extra={"message_id": str(message["id"]), "echo_id": str(echo["id"])},
    )
    return PendingEvent(
        tenant_id=channel.tenant_id,
        type=ev.MESSAGE_MERGED,
        conversation_id=message["conversation"],
        department_id=message["department"],
        assignee_id=message["assignee"],
        data={
            "id": echo["id"],
            "merged_into": message["id"],
            "conversation_id": message["conversation"],
            "provider_message_id": provider_message_id,
        },
    )


async def purge_early_statuses(*, services: Services) -> int:
    """The `core.purge_early_statuses` task: forget parked statuses nobody claimed."""
    rows = await Message.raw(
        "DELETE FROM early_statuses WHERE created_at < now() - make_interval(hours => {})"
        " RETURNING 1 AS gone",
        PARKED_TTL_HOURS,
    )
    if rows:
        log.info("expired early statuses purged", extra={"count": len(rows)})
    return len(rows)
