"""A channel's plain facts (type, name, age, whether active) for plugins that reason
about a channel without loading its adapter: a campaign checks the channel belongs to
the company and ramps up a young number slowly. Read-only, within one tenant."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guiche.runtime.services import Services


@dataclass(frozen=True)
class ChannelFacts:
    id: uuid.UUID
    type: str
    name: str
    active: bool
    created_at: dt.datetime


_FACTS = """
SELECT id, type, name, is_active, created_at FROM channels WHERE id = $1 AND tenant = $2
"""


async def channel_facts(
    services: Services, tenant_id: uuid.UUID, channel_id: uuid.UUID
) -> ChannelFacts | None:
    """The channel's facts, or None when it is not this company's."""
    async with services.db.transaction() as transaction:
        row = await transaction.connection.fetchrow(_FACTS, channel_id, tenant_id)
    if row is None:
        return None
    return ChannelFacts(
        id=row["id"],
        type=row["type"],
        name=row["name"],
        active=bool(row["is_active"]),
        created_at=row["created_at"],
    )
