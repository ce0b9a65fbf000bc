"""One phone's messages across every channel, newest first (public as
`guiche.plugin.messages_by_phone`).

A phone is one contact per company (`contacts_tenant_phone_key`), whatever channel its
messages came through — live webhooks, history imports — so "everything this number
said and was told" is that contact's messages, read on `messages_contact_idx` with a
keyset cursor on (created_at, id): page 100 costs what page 1 does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any

import orjson

from guiche.contacts.phones import whatsapp_phone
from guiche.foundation.errors import BadRequest, ValidationFailed
from guiche.models import Message

MAX_LIMIT = 200

_CONTACT = "SELECT id, name FROM contacts WHERE tenant = {} AND phone = {}"

_PAGE = """
SELECT m.id, m.created_at, m.conversation, m.channel, c.type AS channel_type, m.direction,
       m.type, m.body, m.status, m.provider_message_id
FROM messages m LEFT JOIN channels c ON c.id = m.channel
WHERE m.tenant = {} AND m.contact = {} AND ({} OR (m.created_at, m.id) < ({}, {}))
  AND ({} OR c.type = {})
ORDER BY m.created_at DESC, m.id DESC
LIMIT {}
"""


def phone_of(raw: str) -> str:
    """E.164 from what people type: `+55 11 98765-4321`, raw digits, or a Brazilian mobile
    without its ninth digit (the rules providers' numbers follow)."""
    phone = whatsapp_phone(raw)
    if phone is None:
        raise ValidationFailed(
            "not a phone number", details=[{"field": "phone", "message": "not a phone number"}]
        )
    return phone


def _encode(created_at: dt.datetime, row_id: uuid.UUID) -> str:
    raw = orjson.dumps([created_at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = orjson.loads(base64.urlsafe_b64decode(padded))
        return dt.datetime.fromisoformat(created), uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadRequest("Invalid cursor", code="invalid_cursor") from None


async def messages_by_phone(
    tenant_id: uuid.UUID,
    phone: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    channel_type: str | None = None,
) -> dict[str, Any]:
    """`{"phone", "contact_id", "items", "next_cursor"}`: the company's messages with the
    contact holding `phone` (any channel, or only `channel_type`), newest first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(
            f"limit must be between 1 and {MAX_LIMIT}",
            details=[{"field": "limit", "message": f"between 1 and {MAX_LIMIT}"}],
        )
    e164 = phone_of(phone)
    after = _decode(cursor) if cursor else (None, None)
    contacts = await Message.raw(_CONTACT, tenant_id, e164)
    if not contacts:
        return {"phone": e164, "contact_id": None, "items": [], "next_cursor": None}
    contact_id = contacts[0]["id"]
    rows = await Message.raw(
        _PAGE,
        tenant_id,
        contact_id,
        cursor is None,
        after[0],
        after[1],
        channel_type is None,
        channel_type,
        limit + 1,
    )
    page = rows[:limit]
    next_cursor = _encode(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    items = [
        {
            "id": row["id"],
            "created_at": row["created_at"],
            "conversation_id": row["conversation"],
            "channel_id": row["channel"],
            "channel_type": row["channel_type"],
            "direction": row["direction"],
            "type": row["type"],
            "body": row["body"],
            "status": row["status"],
            "provider_message_id": row["provider_message_id"],
        }
        for row in page
    ]
    return {"phone": e164, "contact_id": contact_id, "items": items, "next_cursor": next_cursor}
