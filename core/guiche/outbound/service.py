"""Creating an outbound message: checks, one transaction, then the kick.

`create_outbound` is the one entry point for REST and the WebSocket `message.send`
command. In one transaction it claims the Idempotency-Key (insert first: a concurrent
duplicate waits on the key's row and then replays), stores the message as `pending`
with its outbox row, touches the conversation and records `message.new`. After commit
it publishes the event and enqueues `core.send_message` with only the message id; if
that kick is lost, the sweeper finds the outbox row.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from guiche.auth.principal import Principal
from guiche.auth.visibility import viewer_for
from guiche.channels import (
    CAP_MEDIA,
    CAP_TEMPLATES,
    ChatKind,
    OutboundMedia,
    OutboundMessage,
    Recipient,
    TemplateRef,
)
from guiche.companies.enablement import enabled_settings
from guiche.foundation.errors import Conflict, NotFound, ValidationFailed
from guiche.foundation.grouping import Grouper
from guiche.foundation.message_ids import created_at_filter, new_message_id
from guiche.media.files import kind_for, media_row, too_large_to_send
from guiche.models import Conversation
from guiche.outbound import outbox
from guiche.outbound.schemas import (
    MediaSend,
    MessageOut,
    SendMessageRequest,
    SendRequest,
    TemplateSend,
    TextSend,
    request_hash,
    request_of,
)
from guiche.outbound.window import check_window
from guiche.realtime import events as ev
from guiche.realtime.events import BusEvent, PendingEvent, record_events
from guiche.runtime.event_hooks import emit_hooks

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.outbound")

SEND_TASK = "core.send_message"
KICK_GROUP = 50
"""Most message ids one send task carries: its sends run concurrently in one task slot."""
_ATTACHED_AT_SEND = "attached-at-send"  # satisfies OutboundMedia's "has a source" check
IDEMPOTENCY_KEY_MAX = 200

_CONVERSATION = """
SELECT c.id, c.tenant, c.status, c.department, c.assignee, c.channel, c.contact,
       c.last_inbound_at, ch.type AS channel_type, ch.is_active AS channel_active,
       ct.phone AS contact_phone, ct.chat_kind AS contact_chat_kind,
       (SELECT i.provider_user_id FROM contact_identities i
         WHERE i.tenant = c.tenant AND i.contact = c.contact AND i.channel_type = ch.type
         ORDER BY i.created_at DESC LIMIT 1) AS provider_user_id
FROM conversations c
JOIN channels ch ON ch.id = c.channel
JOIN contacts ct ON ct.id = c.contact
WHERE c.id = {} AND c.tenant = {}
"""

_CLAIM_KEY = """
INSERT INTO idempotency_keys (tenant, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (tenant, key) DO NOTHING
RETURNING key
"""

_FIND_KEY = "SELECT request_hash, response FROM idempotency_keys WHERE tenant = $1 AND key = $2"

_SAVE_KEY = """
UPDATE idempotency_keys SET status = $3, response = $4::jsonb WHERE tenant = $1 AND key = $2
"""

_LOCK_CONVERSATION = """
SELECT status, department, assignee FROM conversations WHERE id = $1 AND tenant = $2 FOR UPDATE
"""

_INSERT_MESSAGE = """
INSERT INTO messages (id, created_at, tenant, conversation, contact, channel, direction, type,
                      body, payload, status, sender, reply_to, origin)
VALUES ($1, $2, $3, $4, $5, $6, 'out', $7, $8, $9::jsonb, 'pending', $10, $11, $12)
RETURNING *
"""

_TOUCH_CONVERSATION = """
UPDATE conversations
SET last_message_at = GREATEST(coalesce(last_message_at, $2), $2),
    first_agent_reply_at = CASE WHEN $3 THEN coalesce(first_agent_reply_at, $2)
                                ELSE first_agent_reply_at END,
    updated_at = now()
WHERE id = $1
"""

_REPLY_TARGET = """
SELECT id, provider_message_id FROM messages
WHERE tenant = {} AND conversation = {} AND id = {}"""


@dataclass(frozen=True)
class OutboundCreated:
    """The stored message; `replayed` when an Idempotency-Key returned an earlier answer."""

    message: MessageOut
    replayed: bool = False


@dataclass(frozen=True)
class PreparedOutbound:
    """Everything the insert needs, computed before the transaction opens."""

    message_id: uuid.UUID
    type: str
    body: str
    payload: dict[str, Any]
    reply_to: uuid.UUID | None


async def load_visible_conversation(
    principal: Principal, conversation_id: uuid.UUID
) -> dict[str, Any]:
    """The conversation (with its channel type and recipient) if the caller may see it, else 404.

    Another tenant's conversation and one hidden by the visibility rule look the same.
    """
    rows = await Conversation.raw(_CONVERSATION, conversation_id, principal.tenant_id)
    if not rows:
        raise NotFound("conversation not found")
    row = rows[0]
    viewer = await viewer_for(principal, only_visibility=True)
    if not viewer.can_see(
        department_id=row["department"], assignee_id=row["assignee"], status=row["status"]
    ):
        raise NotFound("conversation not found")
    return row


def _closed() -> Conflict:
    return Conflict(
        "The conversation is closed; reopen it or wait for the customer to write",
        code="conversation_closed",
    )


def _invalid(field: str, message: str, code: str = "validation_error") -> ValidationFailed:
    return ValidationFailed(message, code=code, details=[{"field": field, "message": message}])


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable() or not key.isascii():
        raise _invalid(
            "Idempotency-Key",
            f"must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters",
            code="invalid_idempotency_key",
        )
    return key


def _reused() -> ValidationFailed:
    return ValidationFailed(
        "This Idempotency-Key was already used with a different request",
        code="idempotency_key_reused",
    )


async def _replay(tenant_id: uuid.UUID, key: str, digest: str) -> OutboundCreated | None:
    """The first answer for this key, if it was used before (same request only)."""
    rows = await Conversation.raw(
        "SELECT request_hash, response FROM idempotency_keys WHERE tenant = {} AND key = {}",
        tenant_id,
        key,
    )
    if not rows:
        return None
    return _stored_answer(rows[0], digest)


def _stored_answer(row: Any, digest: str) -> OutboundCreated | None:
    if row["request_hash"] != digest:
        raise _reused()
    response = row["response"]
    if response is None:  # cannot happen: the key and its answer commit together
        return None
    data = orjson.loads(response) if isinstance(response, str | bytes) else response
    return OutboundCreated(MessageOut.model_validate(data), replayed=True)


def _capabilities(services: Services, channel_type: str) -> tuple[str, frozenset[str]] | None:
    found = services.plugins.channel_type(channel_type)
    if found is None:
        return None
    plugin, spec = found
    adapter_caps = getattr(spec.adapter, "capabilities", frozenset())
    return plugin, frozenset(spec.capabilities) | frozenset(adapter_caps)


async def _channel_capabilities(
    services: Services, conversation: Mapping[str, Any]
) -> frozenset[str]:
    found = _capabilities(services, conversation["channel_type"])
    usable = (
        found is not None
        and conversation["channel_active"]
        and found[0] in await enabled_settings(services, conversation["tenant"])
    )
    if not usable or found is None:
        raise Conflict(
            "The conversation's channel is disabled or its plugin is not available",
            code="channel_unavailable",
        )
    return found[1]


def _recipient(conversation: Mapping[str, Any]) -> Recipient:
    phone, user_id = conversation["contact_phone"], conversation["provider_user_id"]
    if not phone and not user_id:
        raise Conflict(
            "The contact has no phone or provider id on this channel", code="contact_unreachable"
        )
    kind = ChatKind(conversation.get("contact_chat_kind") or ChatKind.DIRECT)
    if kind is not ChatKind.DIRECT:  # a group or channel chat: addressed by its id only
        return Recipient(provider_user_id=user_id, chat_kind=kind)
    return Recipient(phone=phone, provider_user_id=user_id)


async def _reply_target(
    conversation: Mapping[str, Any], message_id: uuid.UUID | None
) -> tuple[uuid.UUID | None, str | None]:
    if message_id is None:
        return None, None
    at, window = created_at_filter(message_id)
    rows = await Conversation.raw(
        _REPLY_TARGET + at, conversation["tenant"], conversation["id"], message_id, *window
    )
    if not rows:
        raise _invalid("reply_to_message_id", "no such message in this conversation")
    return rows[0]["id"], rows[0]["provider_message_id"]


async def _template_ref(
    conversation: Mapping[str, Any], request: TemplateSend
) -> tuple[TemplateRef, str]:
    """The template to send and its preview text (a stored template's body when it has one)."""
    if request.template is not None:
        return request.template, f"[template {request.template.name}]"
    rows = await Conversation.raw(
        "SELECT name, language, body, status, channel FROM templates WHERE tenant = {} AND id = {}",
        conversation["tenant"],
        request.template_id,
    )
    if not rows:
        raise _invalid("template_id", "template not found")
    row = rows[0]
    if row["channel"] is not None and row["channel"] != conversation["channel"]:
        raise _invalid("template_id", "this template belongs to another channel")
    if row["status"] != "APPROVED":
        raise _invalid(
            "template_id",
            f"template status is {row['status']}, not APPROVED",
            "template_not_usable",
        )
    ref = TemplateRef(
        name=row["name"], language=row["language"], components=request.components or []
    )
    return ref, row["body"] or f"[template {row['name']}]"


async def _prepare(
    services: Services,
    conversation: Mapping[str, Any],
    request: TextSend | MediaSend | TemplateSend,
    message_id: uuid.UUID,
    capabilities: frozenset[str],
) -> PreparedOutbound:
    """Validate the request against the conversation and build the normalised message."""
    to = _recipient(conversation)
    reply_to: uuid.UUID | None = None
    reply_provider_id: str | None = None
    if not isinstance(request, TemplateSend):
        reply_to, reply_provider_id = await _reply_target(conversation, request.reply_to_message_id)
    media_id: uuid.UUID | None = None
    if isinstance(request, TextSend):
        message = OutboundMessage(
            message_id=message_id,
            to=to,
            kind="text",
            text=request.text,
            preview_url=request.preview_url,
            reply_to_provider_message_id=reply_provider_id,
        )
        kind, body = "text", request.text
    elif isinstance(request, MediaSend):
        if CAP_MEDIA not in capabilities:
            raise _invalid("type", "this channel cannot send media", "media_unsupported")
        row = await media_row(conversation["tenant"], request.media_id)
        if row is None:
            raise _invalid("media_id", "media not found; upload it first")
        if too_large_to_send(services.settings, row["size"]):
            limit = services.settings.media_inline_max_bytes
            raise _invalid(
                "media_id", f"files over {limit} bytes cannot be sent", "media_too_large_to_send"
            )
        media_id = row["id"]
        kind = kind_for(row["mime_type"])
        media = OutboundMedia(
            kind=kind,
            data_base64=_ATTACHED_AT_SEND,
            mime_type=row["mime_type"],
            filename=row["filename"],
            caption=request.caption,
        )
        message = OutboundMessage(
            message_id=message_id,
            to=to,
            kind="media",
            media=media,
            reply_to_provider_message_id=reply_provider_id,
        )
        body = request.caption or f"[{kind}]"
    else:
        if CAP_TEMPLATES not in capabilities:
            raise _invalid("type", "this channel has no templates", "templates_unsupported")
        template, body = await _template_ref(conversation, request)
        message = OutboundMessage(message_id=message_id, to=to, kind="template", template=template)
        kind = "template"
    payload: dict[str, Any] = {"normalised": message.model_dump(mode="json", exclude_none=True)}
    if media_id is not None:
        # The bytes are attached when sending (see guiche.media.files), never stored here.
        payload["normalised"]["media"].pop("data_base64")
        payload["media_id"] = str(media_id)
    return PreparedOutbound(message_id, kind, body, payload, reply_to)


async def prepare_outbound(
    services: Services,
    conversation: Mapping[str, Any],
    request: TextSend | MediaSend | TemplateSend,
    now: dt.datetime,
) -> PreparedOutbound:
    """The checks every outbound message passes before its transaction: the channel is
    usable, the 24-hour window (where the channel declares it) and the request's references.

    `conversation` needs `id`, `tenant`, `channel`, `channel_type`, `channel_active`,
    `contact_phone`, `provider_user_id` and `last_inbound_at`.
    """
    capabilities = await _channel_capabilities(services, conversation)
    check_window(capabilities, request.type, conversation["last_inbound_at"], now)
    message_id = new_message_id(now)  # stored with created_at = now: lookups find its chunk
    return await _prepare(services, conversation, request, message_id, capabilities)


async def insert_outbound(
    conn: Any,
    principal: Principal,
    conversation: Mapping[str, Any],
    prepared: PreparedOutbound,
    now: dt.datetime,
    department: uuid.UUID | None,
    assignee: uuid.UUID | None,
    origin: str | None = None,
) -> tuple[MessageOut, PendingEvent]:
    """Inside the caller's transaction: the `pending` message, its outbox row and the
    conversation's activity; returns the message and its `message.new` event to record.
    `origin` tags the message for cost per origin (a plugin's send, `send_direct`)."""
    row = await conn.fetchrow(
        _INSERT_MESSAGE,
        prepared.message_id,
        now,
        principal.tenant_id,
        conversation["id"],
        conversation["contact"],
        conversation["channel"],
        prepared.type,
        prepared.body,
        orjson.dumps(prepared.payload).decode(),
        principal.user_id,
        prepared.reply_to,
        origin,
    )
    await conn.execute(outbox.INSERT, prepared.message_id, now, principal.tenant_id)
    await conn.execute(_TOUCH_CONVERSATION, conversation["id"], now, principal.user_id is not None)
    message = MessageOut.from_row(dict(row))
    return message, _message_new(principal, message, department, assignee)


async def create_outbound(
    services: Services,
    principal: Principal,
    conversation_id: uuid.UUID,
    request: SendMessageRequest | SendRequest,
    idempotency_key: str | None = None,
) -> OutboundCreated:
    """Store an outbound message as `pending` and enqueue its send (REST and WebSocket).

    Raises the typed API errors: 404 unseen conversation, 409 closed conversation or
    unusable channel, 422 outside the 24 h window / bad references / reused key.
    """
    body = request_of(request)
    key = check_idempotency_key(idempotency_key)
    conversation = await load_visible_conversation(principal, conversation_id)
    digest = request_hash(conversation_id, body)
    if key is not None and (earlier := await _replay(principal.tenant_id, key, digest)):
        return earlier
    if conversation["status"] == "CLOSED":
        raise _closed()
    now = dt.datetime.now(dt.UTC)
    prepared = await prepare_outbound(services, conversation, body, now)

    async with services.db.transaction() as transaction:
        conn = transaction.connection
        if key is not None:
            claimed = await conn.fetchval(_CLAIM_KEY, principal.tenant_id, key, digest)
            if claimed is None:  # used meanwhile: that transaction has committed by now
                row = await conn.fetchrow(_FIND_KEY, principal.tenant_id, key)
                earlier = _stored_answer(row, digest) if row is not None else None
                if earlier is None:  # not reachable: a key commits with its answer
                    raise Conflict("Idempotency-Key in use", code="idempotency_key_in_use")
                return earlier
        locked = await conn.fetchrow(_LOCK_CONVERSATION, conversation_id, principal.tenant_id)
        if locked is None:
            raise NotFound("conversation not found")
        if locked["status"] == "CLOSED":
            raise _closed()
        message, event = await insert_outbound(
            conn, principal, conversation, prepared, now, locked["department"], locked["assignee"]
        )
        events = await record_events(conn, [event])
        if key is not None:
            await conn.execute(
                _SAVE_KEY,
                principal.tenant_id,
                key,
                202,
                orjson.dumps(message.model_dump(mode="json")).decode(),
            )
    await _after_commit(services, principal.tenant_id, prepared.message_id, events)
    return OutboundCreated(message)


def _message_new(
    principal: Principal,
    message: MessageOut,
    department: uuid.UUID | None,
    assignee: uuid.UUID | None,
) -> PendingEvent:
    return PendingEvent(
        tenant_id=principal.tenant_id,
        type=ev.MESSAGE_NEW,
        conversation_id=message.conversation_id,
        department_id=department,
        assignee_id=assignee,
        data={
            "id": message.id,
            "conversation_id": message.conversation_id,
            "contact_id": message.contact_id,
            "channel_id": message.channel_id,
            "direction": "out",
            "type": message.type,
            "body": message.body,
            "status": message.status,
            "provider_message_id": None,
            "created_at": message.created_at,
            "sender_id": message.sender_id,
        },
    )


async def _after_commit(
    services: Services, tenant_id: uuid.UUID, message_id: uuid.UUID, events: list[BusEvent]
) -> None:
    await services.bus.publish(events)
    services.spawn(emit_hooks(services, tenant_id, events), name="guiche-outbound-hooks")
    await kick_send(services, message_id)


async def kick_send(services: Services, message_id: uuid.UUID) -> None:
    """Enqueue the send; a failure here only delays it until the sweeper's next pass.

    Sends kicked concurrently in this process share one task (one stream entry carrying
    their ids, up to `KICK_GROUP`): see `kick_sends`.
    """
    if services.tasks is None:
        log.warning("no task queue: message left for the outbox sweeper")
        return
    kicks = services.send_kicks
    if kicks is None:
        kicks = services.send_kicks = Grouper(
            lambda ids: _kick(services, ids), max_items=KICK_GROUP
        )
    await kicks.submit(message_id)


async def kick_sends(services: Services, message_ids: Sequence[uuid.UUID]) -> None:
    """Enqueue these sends, `KICK_GROUP` ids per task (the sweeper's re-kicks)."""
    if services.tasks is None:
        log.warning("no task queue: messages left for the outbox sweeper")
        return
    for start in range(0, len(message_ids), KICK_GROUP):
        await _kick(services, list(message_ids[start : start + KICK_GROUP]))


async def _kick(services: Services, message_ids: list[uuid.UUID]) -> list[None]:
    ids = [str(message_id) for message_id in message_ids]
    try:
        assert services.tasks is not None
        # nobody waits on a result; one id travels as a string, as before
        await services.tasks.fire(SEND_TASK, ids if len(ids) > 1 else ids[0])
    except Exception:
        log.exception("could not enqueue the send: the outbox sweeper will")
    return [None] * len(ids)
