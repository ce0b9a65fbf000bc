"""Notes a plugin brings from another system (a ChatGuru panel's internal notes), stored
as core's notes so agents see them beside the conversation like their own.

Public as `guiche.plugin.add_notes`. Idempotent by `key` per company (a re-import adds
nothing twice); a target that is not the company's is skipped, never written.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guiche.database.engine import connection

if TYPE_CHECKING:
    from guiche.runtime.services import Services


@dataclass(frozen=True)
class ImportedNote:
    """One note: on a conversation or a contact (exactly one), written by `author_name`
    at `created_at` in the other system; `key` is unique per note there (prefix it with
    your plugin's name)."""

    key: str
    body: str
    created_at: dt.datetime
    author_name: str | None = None
    conversation_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if (self.conversation_id is None) == (self.contact_id is None):
            raise ValueError("an imported note needs exactly one of conversation_id, contact_id")
        if not self.key or not self.body:
            raise ValueError("an imported note needs a key and a body")


_INSERT = """
INSERT INTO notes (id, tenant, author, author_name, contact, conversation, body,
                   created_at, source_key)
SELECT n.id, $1, NULL, n.author_name, n.contact, n.conversation, n.body, n.created_at, n.key
FROM unnest($2::uuid[], $3::varchar[], $4::uuid[], $5::uuid[], $6::text[],
            $7::timestamptz[], $8::varchar[])
     AS n(id, author_name, contact, conversation, body, created_at, key)
WHERE (n.conversation IS NOT NULL AND EXISTS (
          SELECT 1 FROM conversations c WHERE c.id = n.conversation AND c.tenant = $1))
   OR (n.contact IS NOT NULL AND EXISTS (
          SELECT 1 FROM contacts k WHERE k.id = n.contact AND k.tenant = $1))
ON CONFLICT (tenant, source_key) WHERE source_key IS NOT NULL DO NOTHING
"""


async def add_notes(
    services: Services, tenant_id: uuid.UUID, notes: Sequence[ImportedNote]
) -> int:
    """Store the notes not stored yet on the company's own conversations or contacts;
    returns how many were added."""
    if not notes:
        return 0
    async with connection(services.db) as conn:
        status = await conn.execute(
            _INSERT,
            tenant_id,
            [uuid.uuid4() for _ in notes],
            [n.author_name[:200] if n.author_name else None for n in notes],
            [n.contact_id for n in notes],
            [n.conversation_id for n in notes],
            [n.body for n in notes],
            [n.created_at for n in notes],
            [n.key[:300] for n in notes],
        )
    return int(status.split()[-1])
