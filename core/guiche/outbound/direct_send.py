"""Sending a message from a plugin (campaigns, bots): to a contact or a phone, on a channel.

Plugins have no conversation to post into, so this finds one: the contact's open
conversation on that channel, else its latest closed one, else a new conversation stored
`CLOSED` — a campaign send never puts work in an agent's queue; the customer's reply
opens a conversation the normal way. The message then takes the REST send's path:
`prepare_outbound` (channel usable, the 24-hour window for channels that declare it,
template and media references), one transaction storing the `pending` message with its
outbox row and `message.new`, then the kick; the outbox sender sends it once and reports
its statuses (`guiche_on_message_status`).

Exactly once per `idempotency_key`: the key is claimed in `idempotency_keys` in the same
transaction (namespaced `plugin:`), so a caller that crashed after the commit and calls
again gets the first message back (`replayed`) instead of a second one. A contact who
opted out (core's `contacts.opted_out`) is refused with 409 `contact_opted_out`.

`origin` is an opaque tag naming what sent the message (`campaign:<id>`): stored on the
message and copied onto the provider's usage rows for it, so `usage_totals` can total
cost per origin. Core never interprets it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import TypeAdapter

from guiche.auth.principal import Principal
from guiche.contacts.phones import InvalidPhone, normalize_phone, tenant_region
from guiche.foundation.errors import Conflict, ValidationFailed
from guiche.foundation.message_ids import time_window
from guiche.models import Message
from guiche.outbound.schemas import MediaSend, SendRequest, TemplateSend, TextSend
from guiche.outbound.service import insert_outbound, kick_send, prepare_outbound
from guiche.realtime.events import record_events
from guiche.runtime.event_hooks import emit_hooks

if TYPE_CHECKING:
    from guiche.runtime.services import Services

KEY_PREFIX = "plugin:"
ORIGIN_MAX = 200
"""The longest `origin` (the width of `messages.origin` and `provider_usage.origin`)."""
_REQUEST = TypeAdapter(SendRequest)

_CHANNEL = "SELECT id, type, is_active FROM channels WHERE id = $1 AND tenant = $2"
_CONTACT = "SELECT id, phone, opted_out, chat_kind FROM contacts WHERE id = $1 AND tenant = $2"
_UPSERT_CONTACT = """
INSERT INTO contacts (tenant, phone, name) VALUES ($1, $2, $3)
ON CONFLICT (tenant, phone) WHERE phone IS NOT NULL
DO UPDATE SET name = CASE WHEN contacts.name = '' THEN EXCLUDED.name ELSE contacts.name END
RETURNING id, phone, opted_out, chat_kind
"""
_REACH = """
SELECT (SELECT i.provider_user_id FROM contact_identities i
         WHERE i.tenant = $1 AND i.contact = $2 AND i.channel_type = $4
         ORDER BY i.created_at DESC LIMIT 1) AS provider_user_id,
       (SELECT max(c.last_inbound_at) FROM conversations c
         WHERE c.contact = $2 AND c.channel = $3) AS last_inbound_at,
       (SELECT c.id FROM conversations c WHERE c.contact = $2 AND c.channel = $3
         ORDER BY (c.status <> 'CLOSED') DESC, c.created_at DESC LIMIT 1) AS conversation
"""
_NEW_CLOSED = """
INSERT INTO conversations (id, tenant, contact, channel, status, opened_at, closed_at,
                           last_inbound_at)
VALUES ($1, $2, $3, $4, 'CLOSED', $5, $5, $6)
"""
_CLAIM_KEY = """
INSERT INTO idempotency_keys (tenant, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (tenant, key) DO NOTHING RETURNING key
"""
_FIND_KEY = "SELECT request_hash, response FROM idempotency_keys WHERE tenant = $1 AND key = $2"
_SAVE_KEY = """
UPDATE idempotency_keys SET status = 201, response = $3::jsonb WHERE tenant = $1 AND key = $2
"""
_LOCK = "SELECT department, assignee FROM conversations WHERE id = $1 FOR UPDATE"


@dataclass(frozen=True)
class DirectSent:
    """The stored outbound message. `replayed`: this key's earlier message, not a new one;
    its `status` is then the message's current one (`pending`, `sent`, `delivered`, ...)."""

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    status: str
    replayed: bool = False


def _invalid(field: str, message: str, code: str = "validation_error") -> ValidationFailed:
    return ValidationFailed(message, code=code, details=[{"field": field, "message": message}])


def _as_request(message: Any) -> TextSend | MediaSend | TemplateSend:
    if isinstance(message, TextSend | MediaSend | TemplateSend):
        return message
    try:
        return _REQUEST.validate_python(message)
    except ValueError as exc:
        raise _invalid("message", str(exc)) from None


def _digest(channel_id: uuid.UUID, target: str, request: Any) -> str:
    canonical = orjson.dumps(
        {"channel": str(channel_id), "to": target, "request": request.model_dump(mode="json")},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


async def _current_status(message_id: uuid.UUID, fallback: str) -> str:
    window = time_window(message_id)
    query = "SELECT status FROM messages WHERE id = {}"
    if window is not None:
        query += " AND created_at >= {} AND created_at < {}"
    rows = await Message.raw(query, message_id, *(window or ()))
    return rows[0]["status"] if rows else fallback


async def _replayed(row: Any, digest: str) -> DirectSent:
    if row["request_hash"] != digest:
        raise ValidationFailed(
            "This idempotency key was already used for a different message",
            code="idempotency_key_reused",
        )
    data = orjson.loads(row["response"]) if isinstance(row["response"], str) else row["response"]
    message_id = uuid.UUID(data["message_id"])
    return DirectSent(
        message_id,
        uuid.UUID(data["conversation_id"]),
        uuid.UUID(data["contact_id"]),
        await _current_status(message_id, data["status"]),
        replayed=True,
    )


async def _reach(
    conn: Any,
    tenant_id: uuid.UUID,
    channel_id: uuid.UUID,
    contact_id: uuid.UUID | None,
    phone: str | None,
    contact_name: str,
) -> tuple[Any, Any, Any]:
    """The channel, the contact (found, or created for a phone) and how to reach it."""
    channel = await conn.fetchrow(_CHANNEL, channel_id, tenant_id)
    if channel is None:
        raise _invalid("channel_id", "channel not found")
    if phone is not None:
        contact = await conn.fetchrow(_UPSERT_CONTACT, tenant_id, phone, contact_name[:200])
    else:
        contact = await conn.fetchrow(_CONTACT, contact_id, tenant_id)
        if contact is None:
            raise _invalid("contact_id", "contact not found")
    if contact["opted_out"]:
        raise Conflict("The contact opted out of messages", code="contact_opted_out")
    reach = await conn.fetchrow(_REACH, tenant_id, contact["id"], channel_id, channel["type"])
    return channel, contact, reach


async def send_direct(
    services: Services,
    tenant_id: uuid.UUID,
    *,
    channel_id: uuid.UUID,
    message: Any,
    idempotency_key: str,
    contact_id: uuid.UUID | None = None,
    phone: str | None = None,
    contact_name: str = "",
    after_store: Callable[[DirectSent], Awaitable[None]] | None = None,
    origin: str | None = None,
) -> DirectSent:
    """Store a message for `contact_id` (or `phone`, finding or creating its contact) on one
    of the tenant's channels and enqueue its send; see the module docstring.

    `message`: `{"type": "text"|"media"|"template", ...}` as the REST send takes it.
    Errors (typed API errors): 422 bad message, unknown contact/channel, invalid phone,
    `outside_customer_care_window`, reused key; 409 `contact_opted_out`,
    `channel_unavailable`, `contact_unreachable`.

    `after_store` is awaited after the commit and before the send is enqueued: record the
    message id where your status hook will look for it, so no status can beat it. Should
    it raise, the message is still sent (the outbox sweeper picks it up).

    `origin` (1 to 200 characters, `<kind>:<id>` by convention) tags the message and its
    provider usage; a replayed key keeps the first call's message and origin.
    """
    if (contact_id is None) == (phone is None):
        raise _invalid("contact_id", "give exactly one of contact_id or phone")
    if not 1 <= len(idempotency_key) <= 180:
        raise _invalid("idempotency_key", "must be 1 to 180 characters")
    if origin is not None and not 1 <= len(origin) <= ORIGIN_MAX:
        raise _invalid("origin", f"must be 1 to {ORIGIN_MAX} characters")
    request = _as_request(message)
    key = KEY_PREFIX + idempotency_key
    pool = services.db.pool
    assert pool is not None, "the database pool opens with the app"
    if phone is not None:
        try:
            phone = normalize_phone(phone, await tenant_region(tenant_id, services))
        except InvalidPhone as exc:
            raise _invalid("phone", str(exc), "invalid_phone") from None
    digest = _digest(channel_id, str(contact_id or phone), request)
    # No wait for a second pooled connection while this one is held (the region above
    # and a replay's status below take their own): callers run by the dozen (a campaign
    # driver), and a pool full of holders waiting for another connection never moves.
    async with pool.acquire() as conn:
        earlier = await conn.fetchrow(_FIND_KEY, tenant_id, key)
        if earlier is None or earlier["response"] is None:
            earlier = None
            channel, contact, reach = await _reach(
                conn, tenant_id, channel_id, contact_id, phone, contact_name
            )
    if earlier is not None:
        return await _replayed(earlier, digest)
    conversation = {
        "id": reach["conversation"] or uuid.uuid4(),
        "tenant": tenant_id,
        "contact": contact["id"],
        "channel": channel_id,
        "channel_type": channel["type"],
        "channel_active": channel["is_active"],
        "contact_phone": contact["phone"],
        "contact_chat_kind": contact["chat_kind"],
        "provider_user_id": reach["provider_user_id"],
        "last_inbound_at": reach["last_inbound_at"],
    }
    now = dt.datetime.now(dt.UTC)
    prepared = await prepare_outbound(services, conversation, request, now)
    principal = Principal(tenant_id=tenant_id, role="plugin", permissions=frozenset())

    async with services.db.transaction() as transaction:
        conn = transaction.connection
        if await conn.fetchval(_CLAIM_KEY, tenant_id, key, digest) is None:
            row = await conn.fetchrow(_FIND_KEY, tenant_id, key)
            if row is None or row["response"] is None:  # not reachable: key commits with answer
                raise Conflict("idempotency key in use", code="idempotency_key_in_use")
            return await _replayed(row, digest)
        if reach["conversation"] is None:
            await conn.execute(
                _NEW_CLOSED,
                conversation["id"],
                tenant_id,
                contact["id"],
                channel_id,
                now,
                reach["last_inbound_at"],
            )
        locked = await conn.fetchrow(_LOCK, conversation["id"])
        stored, event = await insert_outbound(
            conn,
            principal,
            conversation,
            prepared,
            now,
            locked["department"],
            locked["assignee"],
            origin,
        )
        events = await record_events(conn, [event])
        sent = DirectSent(stored.id, conversation["id"], contact["id"], stored.status)
        answer = {
            "message_id": str(sent.message_id),
            "conversation_id": str(sent.conversation_id),
            "contact_id": str(sent.contact_id),
            "status": sent.status,
        }
        await conn.execute(_SAVE_KEY, tenant_id, key, orjson.dumps(answer).decode())
    await services.bus.publish(events)
    services.spawn(emit_hooks(services, tenant_id, events), name="guiche-direct-send-hooks")
    if after_store is not None:
        await after_store(sent)  # raising skips the kick: the sweeper sends it
    await kick_send(services, sent.message_id)
    return sent
