"""Events: recorded with a sequence inside the writer's transaction, published after commit.

Recording first makes pub/sub's at-most-once delivery safe: a client that missed
something resyncs from the log with `GET /api/v1/events?after=<seq>`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from guiche.foundation.jsonio import dumps_text

MESSAGE_NEW = "message.new"
MESSAGE_STATUS = "message.status"
#: An echo of our own send (stored before the send committed) folded into the sent
#: message: clients drop `data.id` and keep `data.merged_into`.
MESSAGE_MERGED = "message.merged"
CONVERSATION_UPDATED = "conversation.updated"
OPERATOR_STATUS = "operator.status"
CHANNEL_STATE = "channel.state"


class PendingEvent(BaseModel):
    """An event not yet recorded. Visibility fields decide which sockets may see it."""

    tenant_id: uuid.UUID
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    conversation_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | None = None


class BusEvent(PendingEvent):
    seq: int
    created_at: dt.datetime

    def wire(self) -> dict[str, Any]:
        """What a client receives (over WebSocket and from the resync endpoint)."""
        return {
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
            "conversation_id": self.conversation_id,
            "created_at": self.created_at,
        }

    def document(self) -> dict[str, Any]:
        """Every field, for `guiche.foundation.jsonio.dumps` (the bus's encoding; `model_validate`
        reads it back). Cheaper than `model_dump`, which copies `data` deeply first."""
        return {
            "tenant_id": self.tenant_id,
            "type": self.type,
            "data": self.data,
            "conversation_id": self.conversation_id,
            "department_id": self.department_id,
            "assignee_id": self.assignee_id,
            "seq": self.seq,
            "created_at": self.created_at,
        }


# The WHERE gives the transaction its xid before `seq`'s nextval runs: log readers
# (`guiche.runtime.event_log.settled_seq`) wait for running transactions by xid, and one
# that held a seq but no xid yet would be invisible to them.
_INSERT = """
INSERT INTO events (tenant, type, conversation, department, assignee, data)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::jsonb[])
WHERE pg_current_xact_id() IS NOT NULL
RETURNING seq, created_at
"""


async def record_events(conn: Any, events: Sequence[PendingEvent]) -> list[BusEvent]:
    """Insert events on `conn` (inside the caller's transaction) and return them sequenced."""
    if not events:
        return []
    rows = await conn.fetch(
        _INSERT,
        [e.tenant_id for e in events],
        [e.type for e in events],
        [e.conversation_id for e in events],
        [e.department_id for e in events],
        [e.assignee_id for e in events],
        [dumps_text(e.data) for e in events],
    )
    # unnest + INSERT ... RETURNING keeps input order in practice; sort by seq to be sure.
    ordered = sorted(rows, key=lambda r: r["seq"])
    # The pending events were validated when built, seq and created_at come typed from
    # asyncpg: no second validation pass (nor model_dump's deep copy of `data`).
    return [
        BusEvent.model_construct(**vars(event), seq=row["seq"], created_at=row["created_at"])
        for event, row in zip(events, ordered, strict=True)
    ]
