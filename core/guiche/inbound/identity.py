"""Who a sender is, per tenant: the E.164 phone where there is one (`guiche.contacts.phones`, the
same rule as typed numbers), else (channel type, provider user id). Providers are moving
to usernames, so a phone is never assumed.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from guiche.channels import ChatKind, Sender
from guiche.contacts.phones import cached_whatsapp_phone


def sender_keys(sender: Sender) -> tuple[str | None, str | None]:
    """(E.164 phone or None, provider user id). A phone that is not a valid number and
    comes without a user id stands in as the user id: still one stable identity."""
    phone = cached_whatsapp_phone(sender.phone) if sender.phone else None
    return phone, sender.provider_user_id or (sender.phone if phone is None else None)


_UPSERT_BY_PHONE = """
INSERT INTO contacts (tenant, phone, name)
VALUES ($1, $2, $3)
ON CONFLICT (tenant, phone) WHERE phone IS NOT NULL
DO UPDATE SET name = CASE WHEN contacts.name = '' THEN EXCLUDED.name ELSE contacts.name END,
              updated_at = CASE WHEN contacts.name = '' AND EXCLUDED.name <> ''
                                THEN now() ELSE contacts.updated_at END
RETURNING id
"""

_FIND_IDENTITY = """
SELECT contact FROM contact_identities
WHERE tenant = $1 AND channel_type = $2 AND provider_user_id = $3
"""

_LINK_IDENTITY = """
INSERT INTO contact_identities (tenant, contact, channel_type, provider_user_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant, channel_type, provider_user_id) DO NOTHING
RETURNING contact
"""


_MARK_CHAT_KIND = """
UPDATE contacts SET chat_kind = $2 WHERE id = ANY($1::uuid[]) AND chat_kind <> $2
"""


async def mark_chat_kinds(conn: Any, kinds: dict[uuid.UUID, ChatKind]) -> None:
    """Mark the contacts that are group or channel chats (people stay `direct`)."""
    by_kind: dict[ChatKind, list[uuid.UUID]] = {}
    for contact_id, kind in kinds.items():
        if kind is not ChatKind.DIRECT:
            by_kind.setdefault(kind, []).append(contact_id)
    for kind, contact_ids in sorted(by_kind.items()):
        await conn.execute(_MARK_CHAT_KIND, sorted(contact_ids), kind.value)


async def resolve_contact(
    conn: Any,
    tenant_id: uuid.UUID,
    channel_type: str,
    sender: Sender,
    *,
    chat_kind: ChatKind = ChatKind.DIRECT,
) -> uuid.UUID:
    """Find or create the sender's contact, race-safe under concurrent webhooks. For a
    group or channel chat, `sender` is the chat (`InboundMessage.party`) and `chat_kind`
    marks its contact."""
    name = sender.name or ""
    phone, user_id = sender_keys(sender)
    if phone is not None:
        contact_id: uuid.UUID = await conn.fetchval(_UPSERT_BY_PHONE, tenant_id, phone, name)
        if user_id:
            await conn.execute(_LINK_IDENTITY, tenant_id, contact_id, channel_type, user_id)
        return contact_id
    assert user_id is not None  # Sender guarantees a phone or a provider user id
    existing = await conn.fetchval(_FIND_IDENTITY, tenant_id, channel_type, user_id)
    if existing is not None and chat_kind is not ChatKind.DIRECT:
        await conn.execute(_MARK_CHAT_KIND, [existing], chat_kind.value)
    if existing is not None:
        if name:
            await conn.execute(
                "UPDATE contacts SET name = $2, updated_at = now() WHERE id = $1 AND name = ''",
                existing,
                name,
            )
        return existing
    custom = {"username": sender.username} if sender.username else {}
    created = await conn.fetchval(
        "INSERT INTO contacts (tenant, name, custom_fields)"
        " VALUES ($1, $2, $3::jsonb) RETURNING id",
        tenant_id,
        name,
        orjson.dumps(custom).decode(),
    )
    if chat_kind is not ChatKind.DIRECT:
        await conn.execute(_MARK_CHAT_KIND, [created], chat_kind.value)
    linked = await conn.fetchval(_LINK_IDENTITY, tenant_id, created, channel_type, user_id)
    if linked is None:  # another transaction linked this user first: use theirs
        await conn.execute("DELETE FROM contacts WHERE id = $1", created)
        return await conn.fetchval(_FIND_IDENTITY, tenant_id, channel_type, user_id)
    return created
