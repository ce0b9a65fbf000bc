"""Routing follow-ups: choose a department for new conversations, assign, drain queues.

Each step is its own short transaction after the ingest commit, so a webhook's ack never
waits on agent locks; a crash in between leaves a PENDING conversation that the
periodic drain assigns later. A caller holding a connection (the webhook's ingest)
passes it, so the steps run on it instead of taking pooled connections of their own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from guiche.database.engine import connection
from guiche.realtime import events as ev
from guiche.realtime.events import BusEvent, PendingEvent, record_events
from guiche.routing.assign import Assignment, queued_conversations, try_assign
from guiche.runtime.event_hooks import emit_hooks
from guiche.specs import RoutingDecision

if TYPE_CHECKING:
    from guiche.channels import StoredMessage
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.routing")

_AUDIT = """
INSERT INTO audit_log (tenant, actor, action, target_type, target_id, data)
VALUES ($1, NULL, $2, 'conversation', $3, $4::jsonb)
"""


# Which of these conversations someone could be assigned to right now: PENDING,
# unassigned, and an online agent of the tenant (of its department, if it has one).
# The same conditions as `assign._CANDIDATES`, without locks or capacity: a conversation
# left out has nobody to wait for, and an agent coming online after this read drains the
# queue, which by then holds the conversation (its ingest committed before this read).
_ASSIGNABLE = """
SELECT c.id FROM conversations c
WHERE c.id = ANY($2::uuid[]) AND c.tenant = $1 AND c.status = 'PENDING' AND c.assignee IS NULL
  AND EXISTS (
      SELECT 1 FROM memberships m
      WHERE m.tenant = $1 AND m.is_active AND m.status = 'online' AND m.role <> 'viewer'
        AND (c.department IS NULL OR EXISTS (
              SELECT 1 FROM department_members dm
              WHERE dm.department = c.department AND dm."user" = m."user")))
"""


@asynccontextmanager
async def _transaction(services: Services, conn: Any) -> AsyncIterator[Any]:
    """A transaction on `conn` when given, else on a pooled connection."""
    if conn is None:
        async with services.db.transaction() as transaction:
            yield transaction.connection
    else:
        async with conn.transaction():
            yield conn


def assignment_event(assignment: Assignment, action: str = "assigned") -> PendingEvent:
    return PendingEvent(
        tenant_id=assignment.tenant_id,
        type=ev.CONVERSATION_UPDATED,
        conversation_id=assignment.conversation_id,
        department_id=assignment.department_id,
        assignee_id=assignment.assignee_id,
        data={
            "action": action,
            "conversation_id": assignment.conversation_id,
            "status": "ACTIVE",
            "assignee_id": assignment.assignee_id,
            "department_id": assignment.department_id,
        },
    )


async def assign_one(
    services: Services, conversation_id: uuid.UUID, *, conn: Any = None
) -> Assignment | None:
    """Try to auto-assign one conversation in its own transaction; publish on success."""
    published: list[BusEvent] = []
    async with _transaction(services, conn) as tx:
        assignment = await try_assign(tx, conversation_id)
        if assignment is None:
            return None
        await tx.execute(
            _AUDIT,
            assignment.tenant_id,
            "conversation.auto_assigned",
            assignment.conversation_id,
            f'{{"assignee": "{assignment.assignee_id}"}}',
        )
        published = await record_events(tx, [assignment_event(assignment)])
    await services.bus.publish(published)
    services.spawn(
        emit_hooks(services, assignment.tenant_id, published), name="guiche-assignment-hooks"
    )
    return assignment


async def apply_decision(
    services: Services,
    conversation_id: uuid.UUID,
    tenant_id: uuid.UUID,
    decision: Any,
    *,
    conn: Any = None,
) -> None:
    """A routing plugin's answer: move to a department (if it is the tenant's) or to BOT."""
    if not isinstance(decision, RoutingDecision):
        log.warning("ignoring routing answer of type %s", type(decision).__name__)
        return
    async with _transaction(services, conn) as tx:
        if decision.bot:
            await tx.execute(
                "UPDATE conversations SET status = 'BOT', queued_at = NULL, updated_at = now()"
                " WHERE id = $1 AND tenant = $2 AND status = 'PENDING'",
                conversation_id,
                tenant_id,
            )
        elif decision.department_id is not None:
            await tx.execute(
                "UPDATE conversations SET department = d.id, updated_at = now()"
                " FROM departments d WHERE conversations.id = $1 AND conversations.tenant = $2"
                " AND d.id = $3 AND d.tenant = $2 AND d.is_active",
                conversation_id,
                tenant_id,
                decision.department_id,
            )


async def route_opened(
    services: Services,
    tenant_id: uuid.UUID,
    opened: Sequence[uuid.UUID],
    messages: Mapping[uuid.UUID, StoredMessage] | None = None,
    *,
    conn: Any = None,
) -> None:
    """New conversations: let a routing plugin decide (shown each one's first message,
    from `messages`), then auto-assign those someone could take (one read for all of
    them: with nobody online that is all it costs)."""
    if conn is None:
        async with connection(services.db) as conn:
            await route_opened(services, tenant_id, opened, messages, conn=conn)
        return
    for conversation_id in opened:
        decision = await services.events.first_result(
            tenant_id, "guiche_route_inbound", message=(messages or {}).get(conversation_id)
        )
        if decision is not None:
            await apply_decision(services, conversation_id, tenant_id, decision, conn=conn)
    assignable = {row["id"] for row in await conn.fetch(_ASSIGNABLE, tenant_id, list(opened))}
    for conversation_id in opened:
        if conversation_id in assignable:
            await assign_one(services, conversation_id, conn=conn)


async def drain_queue(
    services: Services,
    tenant_id: uuid.UUID,
    department_id: uuid.UUID | None = None,
    *,
    limit: int = 100,
) -> int:
    """Assign queued conversations (oldest first) while agents have free slots.

    A department whose waiting conversation found nobody free is left out for the rest
    of the pass (its later ones would find nobody either), so a pass costs one failed
    attempt per department, not one per waiting conversation, and a full department
    never hides the others' queues behind its backlog.
    """
    full: set[uuid.UUID | None] = set()
    assigned = 0
    while assigned < limit:
        async with services.db.transaction() as transaction:
            waiting = await queued_conversations(
                transaction.connection, tenant_id, department_id, limit - assigned, skip=full
            )
        if not waiting:
            break
        for conversation_id, department in waiting:
            if department in full:
                continue
            if await assign_one(services, conversation_id) is None:
                full.add(department)
            else:
                assigned += 1
    return assigned
