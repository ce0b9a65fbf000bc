"""Who sees which figures, as core decides who sees which conversations.

- `reports.read_all` (owner, admin, viewer): the whole company.
- `reports.read_departments` (supervisor): conversations closed in their departments, and
  their own.
- everyone else (agents): their own conversations only, whatever filter they pass.
The queue on the dashboard follows core's rule for queues: the departments one belongs
to (and conversations of no department), or all of them with `reports.read_all`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from guiche.plugin import Forbidden, caller_of, departments_of

READ_ALL = "reports.read_all"
READ_DEPARTMENTS = "reports.read_departments"


@dataclass(frozen=True)
class Visibility:
    all: bool
    user_id: uuid.UUID | None = None
    departments: frozenset[uuid.UUID] = frozenset()
    departments_in_full: bool = False

    def clause(self, args: list[Any]) -> str | None:
        """A WHERE fragment over `agent` / `department` columns (None: no restriction);
        appends its parameters to `args`."""
        if self.all:
            return None
        args.append(self.user_id)
        own = f"agent = ${len(args)}"
        if self.departments_in_full and self.departments:
            args.append(list(self.departments))
            return f"({own} OR department = ANY(${len(args)}::uuid[]))"
        return own

    def sees_queue_of(self, department_id: uuid.UUID | None) -> bool:
        return self.all or department_id is None or department_id in self.departments

    def sees_seat_of(self, user_id: uuid.UUID) -> bool:
        return self.all or self.departments_in_full or user_id == self.user_id


EVERYTHING = Visibility(all=True)


async def visibility_of(request: Any, services: Any) -> Visibility:
    caller = caller_of(request)
    if caller.can(READ_ALL):
        return Visibility(all=True)
    if caller.user_id is None:
        raise Forbidden("Only a person sees their own figures", code="user_required")
    departments = await departments_of(services, caller.tenant_id, caller.user_id)
    return Visibility(
        all=False,
        user_id=caller.user_id,
        departments=departments,
        departments_in_full=caller.can(READ_DEPARTMENTS),
    )
