"""Starting a conversation from our side: a follow-up, or a template to a contact who never wrote.

One transaction opens the conversation and stores its first message through the same
outbox path as any send (`guiche.outbound.service.prepare_outbound` / `insert_outbound`),
so the message is sent once by a worker or visibly `failed`; the audit row and the
`conversation.updated` (`opened`) and `message.new` events commit with it.

- The 24-hour rule is the send path's (`check_window`), measured from the contact's last
  message on that channel (a closed conversation counts); a contact who never wrote
  gets only a template on a channel that declares the window.
- One open conversation per (contact, channel): an existing one is refused with 409
  `conversation_already_open` and returned in `details.conversation`, so the client can
  go there. The partial unique index decides races the pre-check cannot see.
- Without `assignee_id` a person starting it holds it (they expect to see it); an API key
  leaves it queued in the department, where routing offers it like any other.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from guiche.auth.principal import Principal
from guiche.companies.audit import record_audit
from guiche.conversations.transitions import Followups, after_commit, conversation_event
from guiche.foundation.errors import Conflict, Forbidden, ValidationFailed
from guiche.outbound.schemas import MediaSend, MessageOut, TemplateSend, TextSend
from guiche.outbound.service import insert_outbound, kick_send, prepare_outbound
from guiche.realtime.events import record_events

if TYPE_CHECKING:
    from guiche.runtime.services import Services

_CONTACT = "SELECT id, phone, opted_out FROM contacts WHERE id = $1 AND tenant = $2"

_CHANNEL = """
SELECT id, type, is_active, default_department FROM channels WHERE id = $1 AND tenant = $2
"""

_DEPARTMENT = "SELECT id FROM departments WHERE id = $1 AND tenant = $2 AND is_active"

_MEMBER = 'SELECT role, is_active FROM memberships WHERE tenant = $1 AND "user" = $2'

# The recipient on the channel's provider and the customer's last message on this channel.
_REACH = """
SELECT (SELECT i.provider_user_id FROM contact_identities i
         WHERE i.tenant = $1 AND i.contact = $2 AND i.channel_type = $4
         ORDER BY i.created_at DESC LIMIT 1) AS provider_user_id,
       (SELECT max(c.last_inbound_at) FROM conversations c
         WHERE c.contact = $2 AND c.channel = $3) AS last_inbound_at
"""

_OPEN = "SELECT id FROM conversations WHERE contact = $1 AND channel = $2 AND status <> 'CLOSED'"

_INSERT = """
INSERT INTO conversations (id, tenant, contact, channel, department, assignee, status,
                           opened_at, assigned_at, queued_at, last_inbound_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING id, tenant, contact, channel, department, assignee, status, tabulation
"""

_LOCK_SEAT = 'SELECT id FROM memberships WHERE tenant = $1 AND "user" = $2 FOR UPDATE'
_TOUCH_SEAT = "UPDATE memberships SET last_assigned_at = clock_timestamp() WHERE id = $1"


@dataclass(frozen=True)
class StartRequest:
    contact_id: uuid.UUID
    channel_id: uuid.UUID
    department_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    message: TextSend | MediaSend | TemplateSend


@dataclass(frozen=True)
class Started:
    conversation_id: uuid.UUID
    message: MessageOut


class ConversationAlreadyOpen(Conflict):
    """409 carrying the open conversation's id; the route adds its full body."""

    def __init__(self, conversation_id: uuid.UUID) -> None:
        super().__init__(
            "This contact already has an open conversation on this channel; continue it",
            code="conversation_already_open",
            details={"conversation_id": str(conversation_id)},
        )
        self.conversation_id = conversation_id


def _invalid(field: str, message: str, code: str = "validation_error") -> ValidationFailed:
    return ValidationFailed(message, code=code, details=[{"field": field, "message": message}])


async def _references(
    conn: Any, principal: Principal, request: StartRequest
) -> tuple[asyncpg.Record, asyncpg.Record, uuid.UUID | None, uuid.UUID | None]:
    """The contact, channel, department and assignee, each of the caller's company (else 422)."""
    tenant = principal.tenant_id
    contact = await conn.fetchrow(_CONTACT, request.contact_id, tenant)
    if contact is None:
        raise _invalid("contact_id", "contact not found")
    if contact["opted_out"]:
        raise Conflict("The contact opted out of messages", code="contact_opted_out")
    channel = await conn.fetchrow(_CHANNEL, request.channel_id, tenant)
    if channel is None:
        raise _invalid("channel_id", "channel not found")
    department = request.department_id or channel["default_department"]
    if request.department_id is not None:
        if await conn.fetchval(_DEPARTMENT, request.department_id, tenant) is None:
            raise _invalid("department_id", "department not found or inactive")
    assignee = request.assignee_id
    if assignee is not None and assignee != principal.user_id:
        if not principal.can("conversations.assign"):
            raise Forbidden(
                "Starting a conversation for someone else needs conversations.assign",
                code="permission_denied",
                details={"permission": "conversations.assign", "role": principal.role},
            )
    if assignee is None:
        assignee = principal.user_id
    if assignee is not None:
        seat = await conn.fetchrow(_MEMBER, tenant, assignee)
        if seat is None or not seat["is_active"]:
            raise _invalid("assignee_id", "user not found in this company")
        if seat["role"] == "viewer":
            raise _invalid("assignee_id", "a viewer cannot hold conversations", "not_an_agent")
    return contact, channel, department, assignee


async def start_conversation(
    services: Services, principal: Principal, request: StartRequest
) -> Started:
    """Open the conversation with its first message (see the module docstring)."""
    pool = services.db.pool
    assert pool is not None, "the database pool opens with the app"
    async with pool.acquire() as conn:
        contact, channel, department, assignee = await _references(conn, principal, request)
        if (existing := await conn.fetchval(_OPEN, contact["id"], channel["id"])) is not None:
            raise ConversationAlreadyOpen(existing)
        reach = await conn.fetchrow(
            _REACH, principal.tenant_id, contact["id"], channel["id"], channel["type"]
        )
    conversation = {
        "id": uuid.uuid4(),
        "tenant": principal.tenant_id,
        "contact": contact["id"],
        "channel": channel["id"],
        "channel_type": channel["type"],
        "channel_active": channel["is_active"],
        "contact_phone": contact["phone"],
        "provider_user_id": reach["provider_user_id"],
        "last_inbound_at": reach["last_inbound_at"],
    }
    now = dt.datetime.now(dt.UTC)
    prepared = await prepare_outbound(services, conversation, request.message, now)
    status = "ACTIVE" if assignee is not None else "PENDING"

    async with services.db.transaction() as transaction:
        conn = transaction.connection
        seat = None
        if assignee is not None:
            seat = await conn.fetchval(_LOCK_SEAT, principal.tenant_id, assignee)
        try:
            async with conn.transaction():  # a savepoint: the race is answered, not raised
                row = await conn.fetchrow(
                    _INSERT,
                    conversation["id"],
                    principal.tenant_id,
                    contact["id"],
                    channel["id"],
                    department,
                    assignee,
                    status,
                    now,
                    now if assignee is not None else None,
                    None if assignee is not None else now,
                    reach["last_inbound_at"],
                )
        except asyncpg.UniqueViolationError:
            existing = await conn.fetchval(_OPEN, contact["id"], channel["id"])
            raise ConversationAlreadyOpen(existing) from None
        if seat is not None:
            await conn.execute(_TOUCH_SEAT, seat)
        message, message_new = await insert_outbound(
            conn, principal, conversation, prepared, now, department, assignee
        )
        await record_audit(
            principal,
            "conversation.start",
            "conversation",
            row["id"],
            {
                "contact_id": str(contact["id"]),
                "channel_id": str(channel["id"]),
                "message_id": str(message.id),
                "message_type": message.type,
            },
        )
        opened = conversation_event(
            row,
            "opened",
            principal.user_id,
            contact_id=contact["id"],
            channel_id=channel["id"],
        )
        events = await record_events(conn, [opened, message_new])
    route = row["id"] if assignee is None else None
    await after_commit(services, principal.tenant_id, events, Followups(route=route))
    await kick_send(services, message.id)
    return Started(row["id"], message)
