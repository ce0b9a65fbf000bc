"""`ingest()`: one transaction per webhook batch, events published after commit.

Order per message: claim the provider id in `message_keys` (the durable dedup: a
redelivery days later finds the key and stores nothing), resolve the contact, find or
open the conversation, insert the message. Status updates only move forward; one
naming a message we cannot match yet is parked for our sender (`early_statuses`). The
webhook is acknowledged only after this commits; routing and plugin hooks follow.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from guiche.channels import (
    DeliveryStatus,
    InboundMessage,
    StatusUpdate,
    WebhookBatch,
)
from guiche.inbound import early_statuses
from guiche.inbound.followups import after_ingest
from guiche.inbound.identity import resolve_contact
from guiche.realtime import events as ev
from guiche.realtime.events import BusEvent, PendingEvent, record_events
from guiche.web.jsonio import dumps_text

if TYPE_CHECKING:
    from guiche.services import Services

log = logging.getLogger("guiche.inbound")


@dataclass(frozen=True)
class ChannelRow:
    """The parts of a `channels` row ingestion needs."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str
    default_department: uuid.UUID | None = None


@dataclass
class IngestResult:
    created: list[uuid.UUID] = field(default_factory=list)
    duplicates: int = 0
    statuses_applied: int = 0
    statuses_ignored: int = 0
    statuses_parked: int = 0  # unknown yet, kept for the sender (counted as ignored too)
    opened: list[uuid.UUID] = field(default_factory=list)
    events: list[BusEvent] = field(default_factory=list)


async def load_channel(channel_id: uuid.UUID) -> ChannelRow | None:
    from guiche.models import Channel

    row = (
        await Channel.select(Channel.id, Channel.tenant, Channel.type, Channel.default_department)
        .where((Channel.id == channel_id) & (Channel.is_active == True))  # noqa: E712
        .first()
    )
    if row is None:
        return None
    return ChannelRow(row["id"], row["tenant"], row["type"], row["default_department"])


_CLAIM_KEY = """
INSERT INTO message_keys (channel, provider_message_id, tenant, message_id, message_created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (channel, provider_message_id) DO NOTHING
RETURNING message_id
"""

_OPEN_CONVERSATION = """
SELECT id, status, department, assignee FROM conversations
WHERE contact = $1 AND channel = $2 AND status <> 'CLOSED'
"""

_INSERT_CONVERSATION = """
INSERT INTO conversations (tenant, contact, channel, department, status, opened_at, queued_at)
VALUES ($1, $2, $3, $4, 'PENDING', $5, $5)
ON CONFLICT (contact, channel) WHERE status <> 'CLOSED' DO NOTHING
RETURNING id, status, department, assignee
"""

_INSERT_MESSAGE = """
INSERT INTO messages (id, created_at, tenant, conversation, contact, channel, direction, type,
                      body, payload, provider_message_id, status, reply_to)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13)
"""

_TOUCH_CONVERSATION = """
UPDATE conversations
SET last_message_at = GREATEST(coalesce(last_message_at, $2), $2),
    last_inbound_at = CASE WHEN $3 THEN GREATEST(coalesce(last_inbound_at, $2), $2)
                           ELSE last_inbound_at END,
    updated_at = now()
WHERE id = $1
"""

_FIND_REPLY_TARGET = """
SELECT message_id FROM message_keys WHERE channel = $1 AND provider_message_id = $2
"""


async def _conversation_for(
    conn: Any, channel: ChannelRow, contact_id: uuid.UUID, at: dt.datetime
) -> tuple[dict[str, Any], bool]:
    """The contact's open conversation on this channel, or a new PENDING one."""
    row = await conn.fetchrow(_OPEN_CONVERSATION, contact_id, channel.id)
    if row is not None:
        return dict(row), False
    row = await conn.fetchrow(
        _INSERT_CONVERSATION,
        channel.tenant_id,
        contact_id,
        channel.id,
        channel.default_department,
        at,
    )
    if row is None:  # a concurrent batch opened it first
        row = await conn.fetchrow(_OPEN_CONVERSATION, contact_id, channel.id)
        return dict(row), False
    return dict(row), True


def _message_payload(message: InboundMessage) -> dict[str, Any]:
    normalised = message.model_dump(mode="json", exclude={"raw"}, exclude_none=True)
    return {"normalised": normalised, "raw": message.raw}


async def _store_message(
    conn: Any,
    channel: ChannelRow,
    message: InboundMessage,
    result: IngestResult,
    pending: list[PendingEvent],
) -> None:
    message_id = uuid.uuid4()
    at = message.timestamp
    claimed = await conn.fetchval(
        _CLAIM_KEY, channel.id, message.provider_message_id, channel.tenant_id, message_id, at
    )
    if claimed is None:
        result.duplicates += 1
        return
    contact_id = await resolve_contact(conn, channel.tenant_id, channel.type, message.sender)
    conversation, opened = await _conversation_for(conn, channel, contact_id, at)
    reply_to = None
    if message.reply_to_provider_message_id:
        reply_to = await conn.fetchval(
            _FIND_REPLY_TARGET, channel.id, message.reply_to_provider_message_id
        )
    direction = "out" if message.from_me else "in"
    status = DeliveryStatus.SENT.value if message.from_me else "received"
    await conn.execute(
        _INSERT_MESSAGE,
        message_id,
        at,
        channel.tenant_id,
        conversation["id"],
        contact_id,
        channel.id,
        direction,
        message.type.value,
        message.preview(),
        dumps_text(_message_payload(message)),
        message.provider_message_id,
        status,
        reply_to,
    )
    await conn.execute(_TOUCH_CONVERSATION, conversation["id"], at, not message.from_me)
    result.created.append(message_id)
    visibility = {
        "tenant_id": channel.tenant_id,
        "conversation_id": conversation["id"],
        "department_id": conversation["department"],
        "assignee_id": conversation["assignee"],
    }
    if opened:
        result.opened.append(conversation["id"])
        pending.append(
            PendingEvent(
                type=ev.CONVERSATION_UPDATED,
                data={
                    "action": "opened",
                    "conversation_id": conversation["id"],
                    "status": conversation["status"],
                    "contact_id": contact_id,
                    "channel_id": channel.id,
                    "department_id": conversation["department"],
                },
                **visibility,
            )
        )
    pending.append(
        PendingEvent(
            type=ev.MESSAGE_NEW,
            data={
                "id": message_id,
                "conversation_id": conversation["id"],
                "contact_id": contact_id,
                "channel_id": channel.id,
                "direction": direction,
                "type": message.type.value,
                "body": message.preview(),
                "status": status,
                "provider_message_id": message.provider_message_id,
                "created_at": at,
                "sender_name": message.sender.name,
            },
            **visibility,
        )
    )


_STATUS_TARGET = """
SELECT k.message_id, k.message_created_at, m.conversation, c.department, c.assignee
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
                            category, billable, details, cost, currency)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, coalesce($10, 'USD'))
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


async def ingest(services: Services, channel: ChannelRow, batch: WebhookBatch) -> IngestResult:
    """Store a batch in one transaction; then publish its events and run follow-ups."""
    result = IngestResult()
    pending: list[PendingEvent] = []
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        for message in sorted(batch.messages, key=lambda m: m.timestamp):
            await _store_message(conn, channel, message, result, pending)
        for update in sorted(batch.statuses, key=lambda s: s.timestamp):
            await _apply_status(conn, channel, update, result, pending)
        for connection in batch.connection:
            await conn.execute(
                "UPDATE channels SET state = $2, state_detail = $3, updated_at = now()"
                " WHERE id = $1",
                channel.id,
                connection.state.value,
                connection.detail,
            )
            pending.append(
                PendingEvent(
                    tenant_id=channel.tenant_id,
                    type=ev.CHANNEL_STATE,
                    data={
                        "channel_id": channel.id,
                        "state": connection.state.value,
                        "detail": connection.detail,
                    },
                )
            )
        result.events = await record_events(conn, pending)
    await after_ingest(services, channel, result)
    return result
