"""`ingest()`: one transaction per webhook batch, events published after commit.

A batch's messages are stored set-based by one statement (`guiche.inbound.store`):
claim the provider ids in `message_keys` (the durable dedup: a redelivery days later
finds the key and stores nothing), resolve the contacts, find or open the
conversations, insert the messages, record their events. A batch of messages only, from
senders with valid phones (the common webhook), is that one statement and nothing
else: its own transaction, one round trip. Status updates (forward-only; one naming a
message we cannot match yet is parked for our sender, `early_statuses`), connection
states (recorded and announced only when they change) and phone-less senders add
statements around it in one explicit transaction.

A transaction that fails for a retryable reason (deadlock, serialization failure) is
run again from the start (`guiche.database.engine.retrying`) before the webhook is answered 5xx.
The webhook is acknowledged only after the commit; routing (on the same connection, in
its own transactions) and plugin hooks follow.

Whatever a provider sends, one message never costs its batch-mates
(`guiche.inbound.storable`): unstorable text is cleaned first, and a batch the database
refuses for its content is stored again message by message, the refused one reported
and counted in `IngestResult.failed`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from guiche.channels import IngestOutcome, StatusUpdate, WebhookBatch
from guiche.database.engine import connection, retrying
from guiche.foundation.jsonio import dumps_text
from guiche.inbound import early_statuses
from guiche.inbound.coalesce import coalescer_for
from guiche.inbound.followups import after_ingest
from guiche.inbound.storable import STORE_ERRORS, report_failure, storable_batch
from guiche.inbound.store import (
    Incoming,
    Stored,
    incoming,
    needs_identities,
    resolve_identities,
    store_messages,
)
from guiche.realtime import events as ev
from guiche.realtime.events import BusEvent, PendingEvent, record_events

if TYPE_CHECKING:
    from guiche.channel_host.runtime import ChannelRow
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.inbound")


@dataclass
class IngestResult:
    created: list[uuid.UUID] = field(default_factory=list)
    duplicates: int = 0
    statuses_applied: int = 0
    statuses_ignored: int = 0
    statuses_parked: int = 0  # unknown yet, kept for the sender (counted as ignored too)
    opened: list[uuid.UUID] = field(default_factory=list)
    events: list[BusEvent] = field(default_factory=list)
    #: Provider ids of messages the database refused even alone (reported, not stored).
    failed: list[str] = field(default_factory=list)

    def outcome(self) -> IngestOutcome:
        """The public summary a plugin gets (`guiche.plugin.ingest_batch`)."""
        return IngestOutcome(
            stored=tuple(self.created),
            duplicates=self.duplicates,
            statuses_applied=self.statuses_applied,
            statuses_ignored=self.statuses_ignored,
            opened=tuple(self.opened),
            failed=tuple(self.failed),
        )

    def add(self, other: IngestResult) -> None:
        """Fold in the result of a part of the same batch."""
        self.created += other.created
        self.duplicates += other.duplicates
        self.statuses_applied += other.statuses_applied
        self.statuses_ignored += other.statuses_ignored
        self.statuses_parked += other.statuses_parked
        self.opened += other.opened
        self.events += other.events
        self.failed += other.failed


_STATUS_TARGET = """
SELECT k.message_id, k.message_created_at, m.conversation, m.origin, c.department, c.assignee
FROM message_keys k
JOIN messages m ON m.id = k.message_id AND m.created_at = k.message_created_at
LEFT JOIN conversations c ON c.id = m.conversation
WHERE k.channel = $1 AND k.provider_message_id = $2
"""

# Forward-only in SQL, so concurrent webhooks cannot race a status backwards:
# rank(new) > rank(current); failed only from pending/sent; nothing leaves failed.
_APPLY_STATUS = """
UPDATE messages SET status = $3, error = coalesce($4::jsonb, error), updated_at = now()
WHERE id = $1 AND created_at = $2 AND status <> 'failed' AND (
    ($3 = 'failed' AND status IN ('pending', 'sent'))
    OR ($3 <> 'failed' AND
        (CASE $3 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 ELSE 0 END) >
        (CASE status WHEN 'pending' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2
                     WHEN 'read' THEN 3 ELSE 0 END))
)
RETURNING id
"""

_RECORD_USAGE = """
INSERT INTO provider_usage (tenant, channel, message_id, provider_message_id, pricing_model,
                            category, billable, details, cost, currency, origin)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, coalesce($10, 'USD'), $11)
ON CONFLICT (channel, provider_message_id) DO NOTHING
"""


@dataclass(frozen=True)
class StatusOutcome:
    """What one status did: `known` when its provider id names a message of ours,
    `event` (to record) when it moved that message forward."""

    known: bool
    event: PendingEvent | None = None


async def apply_status(conn: Any, channel: ChannelRow, update: StatusUpdate) -> StatusOutcome:
    """Apply one provider status to the message its id names, forward-only.

    Shared by ingest and by the sender (for statuses parked before its commit), so both
    move statuses, record usage and build `message.status` events the same way.
    """
    target = await conn.fetchrow(_STATUS_TARGET, channel.id, update.provider_message_id)
    if target is None:
        return StatusOutcome(known=False)
    error = update.error.model_dump(mode="json") if update.error else None
    moved = await conn.fetchval(
        _APPLY_STATUS,
        target["message_id"],
        target["message_created_at"],
        update.status.value,
        dumps_text(error) if error else None,
    )
    # Once per provider message: the first status that carries pricing (sent, or delivered
    # when sent was missed); later statuses and redelivered webhooks add nothing.
    if update.pricing is not None:
        await conn.execute(
            _RECORD_USAGE,
            channel.tenant_id,
            channel.id,
            target["message_id"],
            update.provider_message_id,
            update.pricing.pricing_model or "",
            update.pricing.category or "",
            bool(update.pricing.billable),
            dumps_text(update.pricing.model_dump(mode="json", exclude_none=True)),
            Decimal(str(update.pricing.cost)) if update.pricing.cost is not None else None,
            update.pricing.currency,
            target["origin"],  # the sender's tag (cost per campaign), None for most
        )
    if moved is None:
        return StatusOutcome(known=True)
    return StatusOutcome(
        known=True,
        event=PendingEvent(
            tenant_id=channel.tenant_id,
            type=ev.MESSAGE_STATUS,
            conversation_id=target["conversation"],
            department_id=target["department"],
            assignee_id=target["assignee"],
            data={
                "id": target["message_id"],
                "conversation_id": target["conversation"],
                "status": update.status.value,
                "error": error,
                "provider_message_id": update.provider_message_id,
                "timestamp": update.timestamp,
            },
        ),
    )


async def _apply_status(
    conn: Any,
    channel: ChannelRow,
    update: StatusUpdate,
    result: IngestResult,
    pending: list[PendingEvent],
) -> None:
    outcome = await apply_status(conn, channel, update)
    if not outcome.known:
        # Perhaps our own send, whose key is being committed right now: wait for that
        # commit, look again, and park the status if it is still unknown.
        await early_statuses.lock_key(conn, channel.id, update.provider_message_id)
        outcome = await apply_status(conn, channel, update)
        if not outcome.known:
            await early_statuses.park(conn, channel.id, update)
            result.statuses_parked += 1
    if outcome.event is None:
        result.statuses_ignored += 1
        return
    result.statuses_applied += 1
    pending.append(outcome.event)


_SET_STATE = """
UPDATE channels SET state = $2, state_detail = $3, updated_at = now()
WHERE id = $1 AND (state, state_detail) IS DISTINCT FROM ($2::varchar, $3::text)
RETURNING id
"""


async def ingest(services: Services, channel: ChannelRow, batch: WebhookBatch) -> IngestResult:
    """Store a batch in one transaction; then publish its events and run follow-ups.

    Text Postgres refuses is cleaned out first. If the database refuses the batch for its
    content, it is stored again in parts (`_ingest_apart`) so only the culprit fails.
    """
    batch = storable_batch(batch)
    try:
        return await _ingest(services, channel, batch)
    except STORE_ERRORS:
        if len(batch.messages) == 0:
            raise  # statuses or states alone: nothing to isolate
        log.warning(
            "batch refused by the database: storing its messages one by one",
            exc_info=True,
            extra={"channel": str(channel.id), "messages": len(batch.messages)},
        )
        return await _ingest_apart(services, channel, batch)


async def _ingest_apart(
    services: Services, channel: ChannelRow, batch: WebhookBatch
) -> IngestResult:
    """The batch's statuses and states, then each message in its own transaction; a
    message refused even alone is reported and counted in `failed`, never retried."""
    result = IngestResult()
    if batch.statuses or batch.connection:
        result.add(await _ingest(services, channel, batch.model_copy(update={"messages": []})))
    for message in batch.messages:
        try:
            result.add(await _ingest(services, channel, WebhookBatch(messages=[message])))
        except STORE_ERRORS as exc:
            report_failure(channel, message, exc)
            result.failed.append(message.provider_message_id)
    return result


async def _ingest(services: Services, channel: ChannelRow, batch: WebhookBatch) -> IngestResult:
    rows, repeated = incoming(batch.messages)
    if rows and not (batch.statuses or batch.connection or needs_identities(rows)):
        # The common webhook shares a transaction with its concurrent neighbours.
        result = IngestResult(duplicates=repeated)
        _count(await coalescer_for(services).store(channel, rows), rows, result)
        await after_ingest(services, channel, result)
        return result

    async def store() -> IngestResult:
        result = IngestResult(duplicates=repeated)  # a fresh one per attempt
        if batch.statuses or batch.connection or needs_identities(rows):
            async with conn.transaction():
                await _ingest_in_transaction(conn, channel, batch, rows, result)
        return result

    async with connection(services.db) as conn:
        # A deadlock or serialization failure rolled everything back: store it again
        # rather than answer 500 (the provider would redeliver anyway, later).
        result = await retrying(store, what="webhook ingest")
        await after_ingest(services, channel, result, conn)
    return result


def _count(stored: Stored, rows: list[Incoming], result: IngestResult) -> None:
    result.created = stored.created
    result.opened = stored.opened
    result.events = stored.events
    result.duplicates += len(rows) - len(stored.created)


async def _ingest_in_transaction(
    conn: Any, channel: ChannelRow, batch: WebhookBatch, rows: list[Incoming], result: IngestResult
) -> None:
    identities = await resolve_identities(conn, channel, rows)
    _count(await store_messages(conn, channel, rows, identities), rows, result)
    pending: list[PendingEvent] = []
    for update in sorted(batch.statuses, key=lambda s: s.timestamp):
        await _apply_status(conn, channel, update, result, pending)
    for state in batch.connection:
        # Only a change is news: session providers repeat their state (Evolution posts
        # `connecting` every few seconds while it cannot reach WhatsApp).
        changed = await conn.fetchval(_SET_STATE, channel.id, state.state.value, state.detail)
        if changed is None:
            continue
        pending.append(
            PendingEvent(
                tenant_id=channel.tenant_id,
                type=ev.CHANNEL_STATE,
                data={
                    "channel_id": channel.id,
                    "state": state.state.value,
                    "detail": state.detail,
                },
            )
        )
    result.events += await record_events(conn, pending)
