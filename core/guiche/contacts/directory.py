"""A company's people, found by id, by a name or phone fragment, or by a department
they talked to: what a plugin picks recipients from (a campaign's targets).

Read-only, always within one tenant; only people (`chat_kind = 'direct'`), never
groups or channels, since those have no phone of their own to address.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guiche.runtime.services import Services


@dataclass(frozen=True)
class ContactRef:
    """A person as a recipient: id, E.164 phone (None for provider-only contacts), name."""

    id: uuid.UUID
    phone: str | None
    name: str


_BY_ID = """
SELECT id, phone, name FROM contacts
WHERE tenant = $1 AND id = ANY($2::uuid[]) AND chat_kind = 'direct'
ORDER BY created_at, id
"""

_MATCHING = """
SELECT id, phone, name FROM contacts
WHERE tenant = $1 AND chat_kind = 'direct'
  AND ($2::text IS NULL OR name ILIKE '%' || $2 || '%' OR phone LIKE '%' || $2 || '%')
  AND ($3::uuid IS NULL OR id IN (SELECT contact FROM conversations
                                   WHERE tenant = $1 AND department = $3))
ORDER BY created_at, id
LIMIT $4
"""


async def find_contacts(
    services: Services,
    tenant_id: uuid.UUID,
    *,
    ids: Sequence[uuid.UUID] | None = None,
    search: str | None = None,
    department_id: uuid.UUID | None = None,
    limit: int = 10_000,
) -> list[ContactRef]:
    """With `ids`, those of them that are the company's people; otherwise the people
    whose name or phone contains `search` and/or who had a conversation in
    `department_id` (all people when neither), oldest first, at most `limit`."""
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        if ids is not None:
            rows = await conn.fetch(_BY_ID, tenant_id, list(ids))
        else:
            rows = await conn.fetch(_MATCHING, tenant_id, search or None, department_id, limit)
    return [ContactRef(id=r["id"], phone=r["phone"], name=r["name"] or "") for r in rows]
