"""Routing follow-ups: choose a department for new conversations, assign, drain queues.

Each step is its own short transaction after the ingest commit, so a webhook's ack never
waits on agent locks; a crash in between leaves a PENDING conversation that the
periodic drain assigns later.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from guiche.plugin import RoutingDecision
from guiche.realtime import events as ev
from guiche.realtime.events import BusEvent, PendingEvent, record_events
from guiche.routing.assign import Assignment, queued_conversations, try_assign

if TYPE_CHECKING:
    from guiche.services import Services

log = logging.getLogger("guiche.routing")

_AUDIT = """
INSERT INTO audit_log (tenant, actor, action, target_type, target_id, data)
VALUES ($1, NULL, $2, 'conversation', $3, $4::jsonb)
"""


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


async def assign_one(services: Services, conversation_id: uuid.UUID) -> Assignment | None:
    """Try to auto-assign one conversation in its own transaction; publish on success."""
    published: list[BusEvent] = []
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        assignment = await try_assign(conn, conversation_id)
        if assignment is None:
            return None
        await conn.execute(
            _AUDIT,
            assignment.tenant_id,
            "conversation.auto_assigned",
            assignment.conversation_id,
            f'{{"assignee": "{assignment.assignee_id}"}}',
        )
        published = await record_events(conn, [assignment_event(assignment)])
    await services.bus.publish(published)
    # Imported here: inbound.followups imports this module.
    from guiche.inbound.followups import emit_hooks

    services.spawn(
        emit_hooks(services, assignment.tenant_id, published), name="guiche-assignment-hooks"
    )
    return assignment


async def apply_decision(
    services: Services, conversation_id: uuid.UUID, tenant_id: uuid.UUID, decision: Any
) -> None:
    """A routing plugin's answer: move to a department (if it is the tenant's) or to BOT."""
    if not isinstance(decision, RoutingDecision):
        log.warning("ignoring routing answer of type %s", type(decision).__name__)
        return
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        if decision.bot:
            await conn.execute(
                "UPDATE conversations SET status = 'BOT', queued_at = NULL, updated_at = now()"
                " WHERE id = $1 AND tenant = $2 AND status = 'PENDING'",
                conversation_id,
                tenant_id,
            )
        elif decision.department_id is not None:
            await conn.execute(
                "UPDATE conversations SET department = d.id, updated_at = now()"
                " FROM departments d WHERE conversations.id = $1 AND conversations.tenant = $2"
                " AND d.id = $3 AND d.tenant = $2 AND d.is_active",
                conversation_id,
                tenant_id,
                decision.department_id,
            )


async def route_opened(
    services: Services, tenant_id: uuid.UUID, opened: list[uuid.UUID], message: Any = None
) -> None:
    """New conversations: let a routing plugin decide, then auto-assign."""
    for conversation_id in opened:
        decision = await services.events.first_result(
            tenant_id, "guiche_route_inbound", message=message
        )
        if decision is not None:
            await apply_decision(services, conversation_id, tenant_id, decision)
        await assign_one(services, conversation_id)


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
