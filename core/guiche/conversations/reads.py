"""Unread counts and read markers: per person, per conversation (`conversation_reads`).

A conversation is unread for someone when the customer wrote after their marker
(`last_inbound_at > last_read_at`, or any inbound message and no marker): the category
counts are then one scan of the visible conversations, no `messages` involved. The
per-conversation count is computed only for a list page's unread rows, capped at
`UNREAD_CAP` (a client shows "99+"), walking `messages_conversation_idx`.

Marking read moves the marker to now and, where the channel declares
`CAP_READ_RECEIPTS`, sends the provider a receipt for the latest inbound message. The
receipt is best effort: a provider failure is reported in the answer and logged, the
marker stays moved.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from guiche.channel_host.runtime import load_channel_adapter
from guiche.channels import CAP_READ_RECEIPTS, ChannelError, ReadReceipt, Recipient
from guiche.provider_http.call_log import provider_call

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.conversations")

UNREAD_CAP = 100

ReceiptOutcome = Literal["sent", "failed", "unsupported", "nothing_to_acknowledge"]

_COUNTS = f"""
SELECT c.id,
       (SELECT count(*) FROM (
            SELECT 1 FROM messages m
            WHERE m.conversation = c.id AND m.direction = 'in'
              AND m.created_at > coalesce(r.last_read_at, '-infinity')
            ORDER BY m.created_at DESC LIMIT {UNREAD_CAP}) x) AS unread
FROM conversations c
LEFT JOIN conversation_reads r ON r.conversation = c.id AND r."user" = $2
WHERE c.id = ANY($1::uuid[]) AND c.tenant = $3
  AND c.last_inbound_at > coalesce(r.last_read_at, '-infinity')
"""

#: SQL condition (aliases `c`, `r`): the conversation has inbound messages after the marker.
UNREAD = "c.last_inbound_at > coalesce(r.last_read_at, '-infinity')"

_MARK = """
INSERT INTO conversation_reads (conversation, "user", tenant, last_read_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (conversation, "user")
DO UPDATE SET last_read_at = GREATEST(conversation_reads.last_read_at, EXCLUDED.last_read_at)
RETURNING last_read_at
"""

_LATEST_INBOUND = """
SELECT m.provider_message_id FROM messages m
WHERE m.conversation = $1 AND m.direction = 'in' AND m.provider_message_id IS NOT NULL
ORDER BY m.created_at DESC, m.id DESC LIMIT 1
"""


async def unread_counts(
    services: Services, tenant_id: uuid.UUID, user_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Unread inbound messages per conversation for this person (absent ids: 0)."""
    if not ids:
        return {}
    pool = services.db.pool
    assert pool is not None, "the database pool opens with the app"
    rows = await pool.fetch(_COUNTS, list(ids), user_id, tenant_id)
    return {row["id"]: row["unread"] for row in rows}


async def mark_read(
    services: Services,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    conversation: dict[str, Any],
) -> tuple[dt.datetime, ReceiptOutcome]:
    """Move the person's marker to now, then send the provider's read receipt if it can."""
    pool = services.db.pool
    assert pool is not None, "the database pool opens with the app"
    now = dt.datetime.now(dt.UTC)
    async with pool.acquire() as conn:
        read_at = await conn.fetchval(_MARK, conversation["id"], user_id, tenant_id, now)
        provider_id = await conn.fetchval(_LATEST_INBOUND, conversation["id"])
    return read_at, await _receipt(services, conversation, provider_id)


async def _receipt(
    services: Services, conversation: dict[str, Any], provider_id: str | None
) -> ReceiptOutcome:
    loaded = await load_channel_adapter(
        services, conversation["channel"], channel_type=conversation["channel_type"]
    )
    if loaded is None:
        return "unsupported"
    capabilities = frozenset(loaded.spec.capabilities) | type(loaded.adapter).capabilities
    if CAP_READ_RECEIPTS not in capabilities:
        return "unsupported"
    phone, user = conversation["contact_phone"], conversation["provider_user_id"]
    if provider_id is None or not (phone or user):
        return "nothing_to_acknowledge"
    receipt = ReadReceipt(
        provider_message_id=provider_id, sender=Recipient(phone=phone, provider_user_id=user)
    )
    try:
        with provider_call(loaded.row.tenant_id, loaded.row.id, "mark_read"):
            await loaded.adapter.mark_read(receipt)
    except ChannelError as exc:
        log.warning("read receipt refused: %s", exc.message, extra={"code": exc.code})
        return "failed"
    except Exception:  # a transport error: the marker has moved, the receipt is best effort
        log.exception("read receipt failed", extra={"channel": str(conversation["channel"])})
        return "failed"
    return "sent"
