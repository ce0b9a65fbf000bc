"""Auto-assignment: the online department member idle longest, under their chat cap.

Safe across processes: a decision locks the candidates' `memberships` rows in id order
(a global order, so two assigners never deadlock), counts their open conversations
while holding the locks, and updates the conversation it has locked itself. Capacity is
per agent across departments, which a per-department lock would not protect.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

_LOCK_CONVERSATION = """
SELECT id, tenant, department, status, assignee FROM conversations WHERE id = $1 FOR UPDATE
"""

_CANDIDATES = """
SELECT m.id, m."user", m.max_concurrent_chats, m.last_assigned_at
FROM memberships m
WHERE m.tenant = $1 AND m.is_active AND m.status = 'online' AND m.role <> 'viewer'
  AND ($2::uuid IS NULL OR EXISTS (
        SELECT 1 FROM department_members dm
        WHERE dm.department = $2 AND dm."user" = m."user"))
ORDER BY m.id
FOR UPDATE OF m
"""

_OPEN_LOAD = """
SELECT assignee, count(*) AS n FROM conversations
WHERE tenant = $1 AND assignee = ANY($2::uuid[]) AND status <> 'CLOSED'
GROUP BY assignee
"""

_ASSIGN = """
UPDATE conversations
SET assignee = $2, status = 'ACTIVE', assigned_at = now(), queued_at = NULL, updated_at = now()
WHERE id = $1
RETURNING id, tenant, department, assignee, status
"""

_TOUCH_AGENT = "UPDATE memberships SET last_assigned_at = clock_timestamp() WHERE id = $1"


@dataclass(frozen=True)
class Assignment:
    conversation_id: uuid.UUID
    tenant_id: uuid.UUID
    department_id: uuid.UUID | None
    assignee_id: uuid.UUID


async def pick_agent(
    conn: Any, tenant_id: uuid.UUID, department_id: uuid.UUID | None
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(membership id, user id) of the agent to assign, with candidate rows locked."""
    candidates = await conn.fetch(_CANDIDATES, tenant_id, department_id)
    if not candidates:
        return None
    loads = {
        row["assignee"]: row["n"]
        for row in await conn.fetch(_OPEN_LOAD, tenant_id, [c["user"] for c in candidates])
    }
    free = [c for c in candidates if loads.get(c["user"], 0) < c["max_concurrent_chats"]]
    if not free:
        return None
    never = [c for c in free if c["last_assigned_at"] is None]
    chosen = (
        min(never, key=lambda c: c["id"])
        if never
        else min(free, key=lambda c: (c["last_assigned_at"], c["id"]))
    )
    return chosen["id"], chosen["user"]


async def try_assign(conn: Any, conversation_id: uuid.UUID) -> Assignment | None:
    """Assign one PENDING, unassigned conversation if someone is free (caller's transaction)."""
    conversation = await conn.fetchrow(_LOCK_CONVERSATION, conversation_id)
    if conversation is None or conversation["status"] != "PENDING" or conversation["assignee"]:
        return None
    picked = await pick_agent(conn, conversation["tenant"], conversation["department"])
    if picked is None:
        return None
    membership_id, user_id = picked
    row = await conn.fetchrow(_ASSIGN, conversation_id, user_id)
    await conn.execute(_TOUCH_AGENT, membership_id)
    return Assignment(row["id"], row["tenant"], row["department"], row["assignee"])


_NEXT_QUEUED = """
SELECT c.id, c.department FROM conversations c
WHERE c.tenant = $1 AND c.status = 'PENDING' AND c.assignee IS NULL
  AND ($2::uuid IS NULL OR c.department = $2)
  AND (c.department IS NULL OR NOT c.department = ANY($4::uuid[]))
  AND NOT ($5::bool AND c.department IS NULL)
ORDER BY c.queued_at NULLS LAST, c.created_at
LIMIT $3
"""


async def queued_conversations(
    conn: Any,
    tenant_id: uuid.UUID,
    department_id: uuid.UUID | None,
    limit: int,
    *,
    skip: Collection[uuid.UUID | None] = (),
) -> list[tuple[uuid.UUID, uuid.UUID | None]]:
    """(id, department) of waiting conversations, oldest first, outside `skip` departments
    (None in `skip` leaves out the conversations that have no department)."""
    rows = await conn.fetch(
        _NEXT_QUEUED,
        tenant_id,
        department_id,
        limit,
        [d for d in skip if d is not None],
        None in skip,
    )
    return [(row["id"], row["department"]) for row in rows]
