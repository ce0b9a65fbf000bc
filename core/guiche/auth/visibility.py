"""Which conversations (and their events) a caller may see: one rule for REST and WebSocket.

- `conversations.read_all` (owner, admin, viewer): every conversation of the tenant.
- `conversations.read_departments` (supervisor): conversations of their departments.
- everyone: conversations assigned to them, and the unassigned queue (PENDING/BOT) of
  their departments — or of no department at all, which every agent may pick up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from guiche.auth.principal import Principal
from guiche.foundation.errors import NotFound
from guiche.models import Conversation, DepartmentMember


@dataclass(frozen=True, slots=True)
class Viewer:
    """A principal's visibility facts, loaded once per request or per socket."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID | None
    all: bool
    departments_in_full: bool
    departments: frozenset[uuid.UUID]

    def can_see(
        self,
        *,
        department_id: uuid.UUID | None,
        assignee_id: uuid.UUID | None,
        status: str | None = None,
    ) -> bool:
        if self.all:
            return True
        if assignee_id is not None and assignee_id == self.user_id:
            return True
        in_my_departments = department_id is not None and department_id in self.departments
        if self.departments_in_full and in_my_departments:
            return True
        queued = assignee_id is None and status in (None, "PENDING", "BOT")
        return queued and (department_id is None or in_my_departments)

    def sql(self, alias: str = "c", first_param: int = 1) -> tuple[str, list[object]]:
        """A WHERE fragment (asyncpg `$n` params) restricting conversations to this viewer."""
        if self.all:
            return "TRUE", []
        user, depts = f"${first_param}", f"${first_param + 1}"
        queued = (
            f"({alias}.assignee IS NULL AND {alias}.status IN ('PENDING', 'BOT')"
            f" AND ({alias}.department IS NULL OR {alias}.department = ANY({depts}::uuid[])))"
        )
        clauses = [f"{alias}.assignee = {user}::uuid", queued]
        if self.departments_in_full:
            clauses.append(f"{alias}.department = ANY({depts}::uuid[])")
        return "(" + " OR ".join(clauses) + ")", [self.user_id, list(self.departments)]


async def viewer_for(principal: Principal, *, only_visibility: bool = False) -> Viewer:
    """The principal's facts. `only_visibility`: the caller only asks `can_see`/`sql`, so
    for someone who sees everything the department list (one query) is not loaded; lists
    scoped to "my departments" need it whoever asks."""
    departments: frozenset[uuid.UUID] = frozenset()
    sees_all = principal.can("conversations.read_all")
    if principal.user_id is not None and not (only_visibility and sees_all):
        rows = await DepartmentMember.select(DepartmentMember.department).where(
            (DepartmentMember.tenant == principal.tenant_id)
            & (DepartmentMember.user == principal.user_id)
        )
        departments = frozenset(row["department"] for row in rows)
    return Viewer(
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        all=sees_all,
        departments_in_full=principal.can("conversations.read_departments"),
        departments=departments,
    )


async def require_visible(principal: Principal, conversation_id: uuid.UUID) -> None:
    """404 unless the caller may see the conversation (another tenant's looks the same)."""
    row = (
        await Conversation.select(
            Conversation.department, Conversation.assignee, Conversation.status
        )
        .where((Conversation.id == conversation_id) & (Conversation.tenant == principal.tenant_id))
        .first()
    )
    viewer = await viewer_for(principal, only_visibility=True) if row is not None else None
    if (
        row is None
        or viewer is None
        or not viewer.can_see(
            department_id=row["department"], assignee_id=row["assignee"], status=row["status"]
        )
    ):
        raise NotFound("conversation not found")
