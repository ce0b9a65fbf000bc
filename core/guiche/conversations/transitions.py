"""Conversation transitions: accept, assign, transfer, close, reopen, and expiry.

Each is one transaction: lock the conversation row, check the caller may see it and
that the move is legal from its status, then write the change with its audit row and
its `conversation.updated` event. After the commit the event is published and the
plugin hook spawned, then routing takes over what the move changed: a freed agent
slot drains the queue, a conversation back in a queue is offered for auto-assignment.

Lock order is the router's (conversation row first, then membership rows), so a
transition and an auto-assignment never deadlock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from guiche.auth.principal import Principal
from guiche.auth.visibility import Viewer
from guiche.companies.audit import record_audit
from guiche.foundation.errors import Conflict, Forbidden, NotFound, ValidationFailed
from guiche.realtime import events as ev
from guiche.realtime.events import BusEvent, PendingEvent, record_events
from guiche.routing.service import assign_one, drain_queue
from guiche.runtime.event_hooks import emit_hooks

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.conversations")

OPEN_STATUSES = frozenset({"BOT", "PENDING", "ACTIVE"})

_COLUMNS = "id, tenant, contact, channel, department, assignee, status, tabulation"

_LOCK = f"SELECT {_COLUMNS} FROM conversations WHERE id = $1 AND tenant = $2 FOR UPDATE"

_SEAT = """
SELECT id, role, is_active, max_concurrent_chats FROM memberships
WHERE tenant = $1 AND "user" = $2
FOR UPDATE
"""

_OPEN_LOAD = """
SELECT count(*) FROM conversations WHERE tenant = $1 AND assignee = $2 AND status <> 'CLOSED'
"""

_TOUCH_SEAT = "UPDATE memberships SET last_assigned_at = clock_timestamp() WHERE id = $1"

_TAKE = f"""
UPDATE conversations
SET assignee = $2, status = 'ACTIVE', assigned_at = now(), queued_at = NULL, updated_at = now()
WHERE id = $1
RETURNING {_COLUMNS}
"""

_QUEUE_IN = f"""
UPDATE conversations
SET department = $2, assignee = NULL, status = 'PENDING', assigned_at = NULL,
    queued_at = now(), updated_at = now()
WHERE id = $1
RETURNING {_COLUMNS}
"""

_CLOSE = f"""
UPDATE conversations
SET status = 'CLOSED', tabulation = $2, closed_at = now(), queued_at = NULL, updated_at = now()
WHERE id = $1
RETURNING {_COLUMNS}
"""

# A reopened conversation starts a new episode: auto-close and reply times count from now.
_REOPEN = f"""
UPDATE conversations
SET status = 'PENDING', assignee = NULL, tabulation = NULL, closed_at = NULL,
    assigned_at = NULL, first_agent_reply_at = NULL, opened_at = now(), queued_at = now(),
    updated_at = now()
WHERE id = $1
RETURNING {_COLUMNS}
"""

_OTHER_OPEN = """
SELECT id FROM conversations
WHERE contact = $1 AND channel = $2 AND status <> 'CLOSED' AND id <> $3
"""

_DEPARTMENT = "SELECT id FROM departments WHERE id = $1 AND tenant = $2 AND is_active"

_TABULATION = "SELECT is_active FROM tabulations WHERE id = $1 AND tenant = $2"

_NOTE = """
INSERT INTO notes (tenant, author, contact, conversation, body) VALUES ($1, $2, $3, $4, $5)
"""


@dataclass(frozen=True)
class Followups:
    """What routing must do once a transition has committed."""

    route: uuid.UUID | None = None  # a conversation back in a queue: try to auto-assign it
    drain: bool = False  # an agent's slot was freed: assign queued conversations


def person(principal: Principal, action: str) -> uuid.UUID:
    """The user behind the request; API keys have no seat to take conversations into."""
    if principal.user_id is None:
        raise Forbidden(f"Only a person can {action} a conversation", code="user_required")
    return principal.user_id


async def _lock_visible(conn: Any, viewer: Viewer, conversation_id: uuid.UUID) -> asyncpg.Record:
    """The locked row, or 404 when it is not this viewer's to see (or not this company's)."""
    row = await conn.fetchrow(_LOCK, conversation_id, viewer.tenant_id)
    if row is None or not viewer.can_see(
        department_id=row["department"], assignee_id=row["assignee"], status=row["status"]
    ):
        raise NotFound("conversation not found")
    return row


def _require_status(row: asyncpg.Record, action: str, allowed: Iterable[str]) -> None:
    legal = sorted(allowed)
    if row["status"] not in legal:
        raise Conflict(
            f"Cannot {action} a conversation that is {row['status']}",
            code="invalid_transition",
            details={"action": action, "status": row["status"], "allowed_from": legal},
        )


async def _agent_seat(conn: Any, tenant_id: uuid.UUID, user_id: uuid.UUID) -> asyncpg.Record:
    """The locked membership of someone who may hold conversations (404 / 422 otherwise)."""
    seat = await conn.fetchrow(_SEAT, tenant_id, user_id)
    if seat is None or not seat["is_active"]:
        raise NotFound("user not found")
    if seat["role"] == "viewer":
        raise ValidationFailed(
            "A viewer cannot hold conversations",
            code="not_an_agent",
            details=[{"field": "user_id", "message": "role viewer", "type": "not_an_agent"}],
        )
    return seat


async def _check_capacity(
    conn: Any, tenant_id: uuid.UUID, seat: asyncpg.Record, user_id: uuid.UUID
) -> None:
    """Called with the seat locked, so two accepts cannot both take the last slot."""
    load = await conn.fetchval(_OPEN_LOAD, tenant_id, user_id)
    if load >= seat["max_concurrent_chats"]:
        raise Conflict(
            "This person already holds as many conversations as their cap allows",
            code="at_capacity",
            details={
                "user_id": str(user_id),
                "open": load,
                "max_concurrent_chats": seat["max_concurrent_chats"],
            },
        )


def conversation_event(
    row: Mapping[str, Any], action: str, actor_id: uuid.UUID | None, **extra: Any
) -> PendingEvent:
    """A `conversation.updated` event, visible as the conversation now is."""
    return PendingEvent(
        tenant_id=row["tenant"],
        type=ev.CONVERSATION_UPDATED,
        conversation_id=row["id"],
        department_id=row["department"],
        assignee_id=row["assignee"],
        data={
            "action": action,
            "conversation_id": row["id"],
            "status": row["status"],
            "assignee_id": row["assignee"],
            "department_id": row["department"],
            "actor_id": actor_id,
            **extra,
        },
    )


async def _record(
    conn: Any,
    principal: Principal,
    after: asyncpg.Record,
    action: str,
    audit_action: str,
    extra: dict[str, Any],
) -> list[BusEvent]:
    await record_audit(
        principal,
        f"conversation.{audit_action}",
        "conversation",
        after["id"],
        {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in extra.items()},
    )
    return await record_events(
        conn, [conversation_event(after, action, principal.user_id, **extra)]
    )


async def after_commit(
    services: Services, tenant_id: uuid.UUID, events: list[BusEvent], followups: Followups
) -> None:
    """Publish, hand the events to plugins, then let routing use what the move changed.

    The move has committed: a routing failure here is logged, not raised (the caller
    would read it as a failed move), and the periodic drain picks the work up later.
    """
    await services.bus.publish(events)
    if events:
        services.spawn(emit_hooks(services, tenant_id, events), name="guiche-conversation-hooks")
    try:
        if followups.route is not None:
            await assign_one(services, followups.route)
        if followups.drain:
            await drain_queue(services, tenant_id)
    except Exception:
        log.exception("routing after a transition failed", extra={"tenant_id": str(tenant_id)})


async def accept(
    services: Services, principal: Principal, viewer: Viewer, conversation_id: uuid.UUID
) -> None:
    """An agent takes a queued conversation, within their concurrent-chat cap."""
    user_id = person(principal, "accept")
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        before = await _lock_visible(conn, viewer, conversation_id)
        if before["status"] == "ACTIVE" or before["assignee"] is not None:
            raise Conflict(
                "This conversation is already assigned",
                code="already_assigned",
                details={"assignee_id": str(before["assignee"]) if before["assignee"] else None},
            )
        _require_status(before, "accept", {"PENDING"})
        seat = await _agent_seat(conn, principal.tenant_id, user_id)
        await _check_capacity(conn, principal.tenant_id, seat, user_id)
        after = await conn.fetchrow(_TAKE, conversation_id, user_id)
        await conn.execute(_TOUCH_SEAT, seat["id"])
        events = await _record(conn, principal, after, "accepted", "accept", {})
    await after_commit(services, principal.tenant_id, events, Followups())


async def assign(
    services: Services,
    principal: Principal,
    viewer: Viewer,
    conversation_id: uuid.UUID,
    user_id: uuid.UUID,
) -> None:
    """A supervisor's explicit choice: the cap does not apply (they decided to exceed it)."""
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        before = await _lock_visible(conn, viewer, conversation_id)
        _require_status(before, "assign", OPEN_STATUSES)
        if before["assignee"] == user_id and before["status"] == "ACTIVE":
            raise Conflict(
                "This conversation is already assigned to that person", code="already_assigned"
            )
        seat = await _agent_seat(conn, principal.tenant_id, user_id)
        after = await conn.fetchrow(_TAKE, conversation_id, user_id)
        await conn.execute(_TOUCH_SEAT, seat["id"])
        previous = before["assignee"]
        events = await _record(
            conn, principal, after, "assigned", "assign", {"previous_assignee_id": previous}
        )
    freed = previous is not None and previous != user_id
    await after_commit(services, principal.tenant_id, events, Followups(drain=freed))


async def transfer(
    services: Services,
    principal: Principal,
    viewer: Viewer,
    conversation_id: uuid.UUID,
    *,
    user_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    note: str = "",
) -> None:
    """Hand a conversation to one agent (within their cap) or to a department's queue."""
    if (user_id is None) == (department_id is None):
        raise ValidationFailed("Give exactly one of user_id or department_id")
    tenant_id = principal.tenant_id
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        before = await _lock_visible(conn, viewer, conversation_id)
        _require_status(before, "transfer", OPEN_STATUSES)
        if user_id is not None:
            if before["assignee"] == user_id:
                raise Conflict(
                    "This conversation is already assigned to that person",
                    code="already_assigned",
                )
            seat = await _agent_seat(conn, tenant_id, user_id)
            await _check_capacity(conn, tenant_id, seat, user_id)
            after = await conn.fetchrow(_TAKE, conversation_id, user_id)
            await conn.execute(_TOUCH_SEAT, seat["id"])
        else:
            if await conn.fetchval(_DEPARTMENT, department_id, tenant_id) is None:
                raise NotFound("department not found")
            if before["assignee"] is None and before["department"] == department_id:
                raise Conflict(
                    "This conversation is already waiting in that department",
                    code="already_queued",
                )
            after = await conn.fetchrow(_QUEUE_IN, conversation_id, department_id)
        if note:
            await conn.execute(
                _NOTE, tenant_id, principal.user_id, before["contact"], conversation_id, note
            )
        extra = {
            "from_assignee_id": before["assignee"],
            "from_department_id": before["department"],
            "to_user_id": user_id,
            "to_department_id": department_id,
            "note": note,
        }
        events = await _record(conn, principal, after, "transferred", "transfer", extra)
    freed = before["assignee"] is not None
    route = conversation_id if department_id is not None else None
    await after_commit(services, tenant_id, events, Followups(route=route, drain=freed))


async def close(
    services: Services,
    principal: Principal,
    viewer: Viewer,
    conversation_id: uuid.UUID,
    tabulation_id: uuid.UUID,
) -> None:
    """Close with the reason the agent picked; the agent's slot is freed for the queue."""
    tenant_id = principal.tenant_id
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        before = await _lock_visible(conn, viewer, conversation_id)
        _require_status(before, "close", OPEN_STATUSES)
        active = await conn.fetchval(_TABULATION, tabulation_id, tenant_id)
        if active is None:
            raise NotFound("tabulation not found")
        if not active:
            raise ValidationFailed(
                "This tabulation is no longer offered",
                code="inactive_tabulation",
                details=[{"field": "tabulation_id", "message": "inactive", "type": "inactive"}],
            )
        after = await conn.fetchrow(_CLOSE, conversation_id, tabulation_id)
        events = await _record(
            conn, principal, after, "closed", "close", {"tabulation_id": tabulation_id}
        )
    freed = before["assignee"] is not None
    await after_commit(services, tenant_id, events, Followups(drain=freed))


async def reopen(
    services: Services, principal: Principal, viewer: Viewer, conversation_id: uuid.UUID
) -> None:
    """Back to the queue, unless the contact already has another open one on the channel."""
    tenant_id = principal.tenant_id
    try:
        async with services.db.transaction() as transaction:
            conn = transaction.connection
            before = await _lock_visible(conn, viewer, conversation_id)
            _require_status(before, "reopen", {"CLOSED"})
            other = await conn.fetchval(
                _OTHER_OPEN, before["contact"], before["channel"], conversation_id
            )
            if other is not None:
                raise _already_open(other)
            after = await conn.fetchrow(_REOPEN, conversation_id)
            events = await _record(conn, principal, after, "reopened", "reopen", {})
    except asyncpg.UniqueViolationError:  # another one opened between the check and the update
        raise _already_open(None) from None
    await after_commit(services, tenant_id, events, Followups(route=conversation_id))


def _already_open(other: uuid.UUID | None) -> Conflict:
    return Conflict(
        "The contact already has an open conversation on this channel",
        code="conversation_already_open",
        details={"conversation_id": str(other) if other else None},
    )


_EXPIRE = """
WITH limits AS (
    SELECT * FROM unnest($1::uuid[], $2::int[]) AS l(tenant, hours)
), idle AS (
    SELECT c.id, l.hours FROM conversations c JOIN limits l ON l.tenant = c.tenant
    WHERE c.status IN ('BOT', 'PENDING', 'ACTIVE')
      AND GREATEST(c.last_inbound_at, c.opened_at) < now() - make_interval(hours => l.hours)
    ORDER BY c.id
    LIMIT $3
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE conversations c
SET status = 'CLOSED', closed_at = now(), queued_at = NULL, updated_at = now()
FROM idle
WHERE c.id = idle.id
RETURNING c.id, c.tenant, c.department, c.assignee, c.status, idle.hours
"""

_EXPIRE_AUDIT = """
INSERT INTO audit_log (tenant, actor, action, target_type, target_id, data)
SELECT t, NULL, 'conversation.expire', 'conversation', id, jsonb_build_object('idle_hours', h)
FROM unnest($1::uuid[], $2::uuid[], $3::int[]) AS x(t, id, h)
"""


async def expire_idle(
    services: Services, hours_by_tenant: Mapping[uuid.UUID, int], *, batch: int = 500
) -> int:
    """Close conversations whose customer has been silent longer than their company allows.

    Silence counts from the last inbound message, or from the (re)opening when there is
    none since. Rows another transaction holds are skipped (`SKIP LOCKED`): an agent
    acting on one right now wins, and the next run looks again.
    """
    if not hours_by_tenant:
        return 0
    tenants, hours = list(hours_by_tenant), list(hours_by_tenant.values())
    total = 0
    while True:
        async with services.db.transaction() as transaction:
            conn = transaction.connection
            rows = await conn.fetch(_EXPIRE, tenants, hours, batch)
            if not rows:
                return total
            await conn.execute(
                _EXPIRE_AUDIT,
                [r["tenant"] for r in rows],
                [r["id"] for r in rows],
                [r["hours"] for r in rows],
            )
            events = await record_events(
                conn,
                [conversation_event(r, "expired", None, auto_close_hours=r["hours"]) for r in rows],
            )
        total += len(rows)
        freed = {r["tenant"] for r in rows if r["assignee"] is not None}
        for tenant_id in {r["tenant"] for r in rows}:
            mine = [e for e in events if e.tenant_id == tenant_id]
            await after_commit(services, tenant_id, mine, Followups(drain=tenant_id in freed))
        if len(rows) < batch:
            return total
