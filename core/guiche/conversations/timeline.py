"""Read-only conversation histories for reports: what happened to a conversation, when.

A plugin that measures service (waiting, response and handling times) needs facts it
cannot see through the event hooks alone: every transition of a conversation since it
opened (including those that happened before the plugin was enabled), who sent each
message, the company's closed conversations in closing order (to catch up on closes a
hook missed), the queue as it is now, the names behind ids, and a supervisor's
departments (their scope). This module answers
those questions in a few set-based queries per batch, always within one tenant, and
never writes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guiche.runtime.services import Services

INBOUND = "inbound"
"""A step: the customer wrote."""
OUTBOUND = "outbound"
"""A step: a message went out (`agent_id` is the person who sent it, None when automated)."""


@dataclass(frozen=True)
class TimelineStep:
    """One thing that happened to a conversation.

    `kind` is a conversation event's action (`opened`, `assigned`, `accepted`,
    `transferred`, `closed`, `reopened`, `expired`, ...) or `inbound` / `outbound` for a
    message. For a transition, `status`, `agent_id` and `department_id` are the
    conversation's state right after it (and `tabulation_id` the reason given on close);
    for an outbound message `agent_id` is its sender.
    """

    at: dt.datetime
    kind: str
    status: str | None = None
    agent_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    tabulation_id: uuid.UUID | None = None


@dataclass(frozen=True)
class ConversationTimeline:
    """A conversation as it is now, and its steps in order (transitions and messages)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    contact_id: uuid.UUID
    channel_id: uuid.UUID
    channel_type: str
    status: str
    department_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    tabulation_id: uuid.UUID | None
    created_at: dt.datetime
    closed_at: dt.datetime | None
    steps: tuple[TimelineStep, ...] = field(default=())


@dataclass(frozen=True)
class QueueDepartment:
    department_id: uuid.UUID | None
    waiting: int
    oldest_queued_at: dt.datetime | None


@dataclass(frozen=True)
class QueueAgent:
    user_id: uuid.UUID
    status: str
    open_conversations: int


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue now: conversations waiting per department, and every active agent seat."""

    departments: tuple[QueueDepartment, ...]
    agents: tuple[QueueAgent, ...]


_CONVERSATIONS = """
SELECT c.id, c.tenant, c.contact, c.channel, ch.type AS channel_type, c.status, c.department,
       c.assignee, c.tabulation, c.created_at, c.closed_at
FROM conversations c JOIN channels ch ON ch.id = c.channel
WHERE c.tenant = $1 AND c.id = ANY($2::uuid[])
"""

_EVENTS = """
SELECT conversation, created_at, data->>'action' AS action, data->>'status' AS status,
       assignee, department, data->>'tabulation_id' AS tabulation
FROM events
WHERE conversation = ANY($2::uuid[]) AND tenant = $1 AND type = 'conversation.updated'
ORDER BY conversation, seq
"""

_MESSAGES = """
SELECT conversation, created_at, direction, sender
FROM messages
WHERE conversation = ANY($2::uuid[]) AND tenant = $1
ORDER BY conversation, created_at, id
"""

_CLOSED_SINCE = """
SELECT id, closed_at FROM conversations
WHERE tenant = $1 AND status = 'CLOSED' AND (closed_at, id) > ($2, $3)
ORDER BY closed_at, id
LIMIT $4
"""

_QUEUE = """
SELECT department, count(*) AS waiting, min(queued_at) AS oldest
FROM conversations
WHERE tenant = $1 AND status = 'PENDING' AND assignee IS NULL
GROUP BY department
"""

_AGENTS = """
SELECT m."user", m.status,
       (SELECT count(*) FROM conversations c
        WHERE c.tenant = m.tenant AND c.assignee = m."user" AND c.status <> 'CLOSED') AS open
FROM memberships m
WHERE m.tenant = $1 AND m.is_active AND m.role <> 'viewer'
ORDER BY m."user"
"""

_NAMES = """
SELECT 'agent' AS kind, m."user" AS id, coalesce(m.display_name, u.name) AS name
FROM memberships m JOIN users u ON u.id = m."user" WHERE m.tenant = $1
UNION ALL SELECT 'department', id, name FROM departments WHERE tenant = $1
UNION ALL SELECT 'channel', id, name FROM channels WHERE tenant = $1
UNION ALL SELECT 'tabulation', id, name FROM tabulations WHERE tenant = $1
"""

_DEPARTMENTS_OF = """
SELECT department FROM department_members WHERE tenant = $1 AND "user" = $2
"""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NIL = uuid.UUID(int=0)


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


async def conversation_timelines(
    services: Services, tenant_id: uuid.UUID, conversation_ids: Sequence[uuid.UUID]
) -> list[ConversationTimeline]:
    """The timelines of the tenant's conversations among `conversation_ids` (others and
    unknown ids are left out), in three queries whatever their number."""
    ids = list(dict.fromkeys(conversation_ids))
    if not ids:
        return []
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        rows = await conn.fetch(_CONVERSATIONS, tenant_id, ids)
        events = await conn.fetch(_EVENTS, tenant_id, ids)
        messages = await conn.fetch(_MESSAGES, tenant_id, ids)
    steps: dict[uuid.UUID, list[tuple[dt.datetime, int, TimelineStep]]] = {}
    for order, e in enumerate(events):
        step = TimelineStep(
            at=e["created_at"],
            kind=e["action"] or "updated",
            status=e["status"],
            agent_id=e["assignee"],
            department_id=e["department"],
            tabulation_id=_uuid(e["tabulation"]),
        )
        steps.setdefault(e["conversation"], []).append((step.at, order, step))
    base = len(events)
    for order, m in enumerate(messages, start=base):
        step = TimelineStep(
            at=m["created_at"],
            kind=INBOUND if m["direction"] == "in" else OUTBOUND,
            agent_id=m["sender"],
        )
        steps.setdefault(m["conversation"], []).append((step.at, order, step))
    return [
        ConversationTimeline(
            id=r["id"],
            tenant_id=r["tenant"],
            contact_id=r["contact"],
            channel_id=r["channel"],
            channel_type=r["channel_type"],
            status=r["status"],
            department_id=r["department"],
            assignee_id=r["assignee"],
            tabulation_id=r["tabulation"],
            created_at=r["created_at"],
            closed_at=r["closed_at"],
            steps=tuple(s for _, _, s in sorted(steps.get(r["id"], []), key=lambda t: t[:2])),
        )
        for r in rows
    ]


async def conversation_timeline(
    services: Services, tenant_id: uuid.UUID, conversation_id: uuid.UUID
) -> ConversationTimeline | None:
    """One conversation's timeline, or None when it is not the tenant's."""
    found = await conversation_timelines(services, tenant_id, [conversation_id])
    return found[0] if found else None


async def closed_conversations(
    services: Services,
    tenant_id: uuid.UUID,
    *,
    after: tuple[dt.datetime, uuid.UUID] | None = None,
    limit: int = 500,
) -> list[tuple[uuid.UUID, dt.datetime]]:
    """The tenant's closed conversations as `(id, closed_at)`, in closing order, after the
    keyset `after` (the last pair a previous call returned): a catch-up cursor."""
    at, last = after if after is not None else (_EPOCH, _NIL)
    async with services.db.transaction() as transaction:
        rows = await transaction.connection.fetch(_CLOSED_SINCE, tenant_id, at, last, limit)
    return [(r["id"], r["closed_at"]) for r in rows]


async def queue_snapshot(services: Services, tenant_id: uuid.UUID) -> QueueSnapshot:
    """Waiting conversations per department (with the oldest wait) and the agents' presence
    and open conversations, as of now."""
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        queue = await conn.fetch(_QUEUE, tenant_id)
        agents = await conn.fetch(_AGENTS, tenant_id)
    return QueueSnapshot(
        departments=tuple(
            QueueDepartment(r["department"], r["waiting"], r["oldest"]) for r in queue
        ),
        agents=tuple(QueueAgent(r["user"], r["status"], r["open"]) for r in agents),
    )


async def reference_names(
    services: Services, tenant_id: uuid.UUID
) -> dict[str, dict[uuid.UUID, str]]:
    """The tenant's names behind ids, by kind: `agent` (the company's display name, else the
    person's), `department`, `channel`, `tabulation`."""
    names: dict[str, dict[uuid.UUID, str]] = {
        "agent": {},
        "department": {},
        "channel": {},
        "tabulation": {},
    }
    async with services.db.transaction() as transaction:
        for r in await transaction.connection.fetch(_NAMES, tenant_id):
            names[r["kind"]][r["id"]] = r["name"]
    return names


async def departments_of(
    services: Services, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> frozenset[uuid.UUID]:
    """The departments a person belongs to in the tenant: a supervisor's scope (core shows
    supervisors the conversations of their departments)."""
    async with services.db.transaction() as transaction:
        rows = await transaction.connection.fetch(_DEPARTMENTS_OF, tenant_id, user_id)
    return frozenset(r["department"] for r in rows)
