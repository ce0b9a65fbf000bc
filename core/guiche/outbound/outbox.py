"""The `message_outbox` table: which outbound messages are unsettled, and who is sending one.

A send is guarded by a *claim*: one atomic UPDATE that takes a lease (`locked_until`,
`lock_token`) on a row that is due and not leased. Two workers, or a task delivered
twice, cannot both win it; a worker that dies mid-send leaves a lease that expires, and
the sweeper hands the row to someone else. Settling (sent/failed) deletes the row in
the same transaction that writes the message's status.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from guiche.models import Message

INSERT = """
INSERT INTO message_outbox (message_id, message_created_at, tenant) VALUES ($1, $2, $3)
"""

CLAIM = """
UPDATE message_outbox
SET attempts = attempts + 1,
    locked_until = now() + make_interval(secs => {}),
    lock_token = {}
WHERE message_id = {}
  AND next_attempt_at <= now()
  AND (locked_until IS NULL OR locked_until < now())
RETURNING message_id, tenant, message_created_at, attempts
"""
"""The lease: placeholders lease seconds, token, message id. A CTE in the sender's load."""

_RESCHEDULE = """
UPDATE message_outbox
SET next_attempt_at = now() + make_interval(secs => {}),
    locked_until = NULL,
    lock_token = NULL,
    last_error = {}::jsonb
WHERE message_id = {} AND lock_token = {}
RETURNING next_attempt_at
"""

_DUE = """
SELECT message_id FROM message_outbox
WHERE next_attempt_at <= now() - make_interval(secs => {})
  AND (locked_until IS NULL OR locked_until < now())
ORDER BY next_attempt_at
LIMIT {}
"""

DELETE = "DELETE FROM message_outbox WHERE message_id = $1"


@dataclass(frozen=True)
class Claim:
    """A won lease: this worker, and only it, may send the message now."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    message_created_at: dt.datetime
    attempts: int
    token: uuid.UUID


async def claim(message_id: uuid.UUID, lease_seconds: float) -> Claim | None:
    """Lease the row if it is due and free; None when settled, leased elsewhere or not due."""
    token = uuid.uuid4()
    rows = await Message.raw(CLAIM, float(lease_seconds), token, message_id)
    if not rows:
        return None
    row = rows[0]
    return Claim(message_id, row["tenant"], row["message_created_at"], row["attempts"], token)


async def reschedule(claim: Claim, delay_seconds: float, error: dict[str, Any]) -> bool:
    """Release the lease and make the row due again after `delay_seconds`."""
    rows = await Message.raw(
        _RESCHEDULE,
        float(delay_seconds),
        orjson.dumps(error, default=str).decode(),
        claim.message_id,
        claim.token,
    )
    return bool(rows)


async def release(message_id: uuid.UUID) -> None:
    """Drop a row whose message no longer needs sending (gone, or already settled)."""
    await Message.raw("DELETE FROM message_outbox WHERE message_id = {}", message_id)


async def due(older_than_seconds: float, limit: int) -> list[uuid.UUID]:
    """Rows due for at least `older_than_seconds` and not leased (an expired lease is free)."""
    rows = await Message.raw(_DUE, float(older_than_seconds), limit)
    return [row["message_id"] for row in rows]
