"""The `message_outbox` table: which outbound messages are unsettled, and who is sending one.

A send is guarded by a *claim*: one atomic UPDATE that takes a lease (`locked_until`,
`lock_token`) on a row that is due and not leased. Two workers, or a task delivered
twice, cannot both win it; a worker that dies mid-send leaves a lease that expires, and
the sweeper hands the row to someone else. Settling (sent/failed/unknown) deletes the
row in the same transaction that writes the message's status.

The claim is also the durable "provider call started" record: a holder that ends
cleanly settles the row or releases it (`released_attempts = attempts`), so a claim
that finds an earlier attempt neither settled nor released returns `in_doubt`: that
holder may have had its send accepted before it died.
"""

from __future__ import annotations

import asyncio
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
RETURNING message_id, tenant, message_created_at, attempts,
          attempts - 1 > released_attempts AS in_doubt
"""
"""The lease: placeholders lease seconds, token, message id. A CTE in the sender's load.

`in_doubt`: an earlier holder claimed and never settled nor released (it died, or lost
the database, possibly after the provider accepted its call)."""

CLAIM_MANY = """
UPDATE message_outbox o
SET attempts = o.attempts + 1,
    locked_until = now() + make_interval(secs => $1),
    lock_token = $2
FROM (SELECT message_id FROM message_outbox
      WHERE message_id = ANY($3::uuid[])
        AND next_attempt_at <= now()
        AND (locked_until IS NULL OR locked_until < now())
      ORDER BY message_id
      FOR UPDATE SKIP LOCKED) due
WHERE o.message_id = due.message_id
RETURNING o.message_id, o.tenant, o.message_created_at, o.attempts,
          o.attempts - 1 > o.released_attempts AS in_doubt
"""
"""`CLAIM` for a group of messages, one lease token for all (a row's lease is its id and
the token): lease seconds, token, ids. Rows locked by a concurrent claim or settle are
skipped (that holder has them), so two groups sharing ids never deadlock."""

_RESCHEDULE = """
UPDATE message_outbox
SET next_attempt_at = now() + make_interval(secs => {}),
    locked_until = NULL,
    lock_token = NULL,
    released_attempts = CASE WHEN {} THEN attempts ELSE released_attempts END,
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

LEASE_SAFETY_SECONDS = 5.0
"""A holder stops retrying its settle this long before its lease ends, so its writes never
overlap the next holder's (the lease is timed by the database's clock, this by ours)."""


@dataclass(frozen=True)
class Claim:
    """A won lease: this worker, and only it, may send the message now."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    message_created_at: dt.datetime
    attempts: int
    token: uuid.UUID
    in_doubt: bool = False
    #: On the event loop's clock: the last moment this holder may still write (settle).
    settle_by: float = float("inf")

    @classmethod
    def won(cls, row: Any, message_id: uuid.UUID, token: uuid.UUID, lease: float) -> Claim:
        """The claim a CLAIM row stands for (its lease counted from now)."""
        settle_by = asyncio.get_running_loop().time() + lease - LEASE_SAFETY_SECONDS
        return cls(
            message_id,
            row["tenant"],
            row["message_created_at"],
            row["attempts"],
            token,
            row["in_doubt"],
            settle_by,
        )


async def claim(message_id: uuid.UUID, lease_seconds: float) -> Claim | None:
    """Lease the row if it is due and free; None when settled, leased elsewhere or not due."""
    token = uuid.uuid4()
    rows = await Message.raw(CLAIM, float(lease_seconds), token, message_id)
    return Claim.won(rows[0], message_id, token, lease_seconds) if rows else None


async def reschedule(
    claim: Claim, delay_seconds: float, error: dict[str, Any], *, in_doubt: bool = False
) -> bool:
    """Release the lease and make the row due again after `delay_seconds`.

    `in_doubt`: this attempt's provider call may have been accepted (a timeout), so the
    next claim must reconcile first rather than count this attempt as released.
    """
    rows = await Message.raw(
        _RESCHEDULE,
        float(delay_seconds),
        not in_doubt,
        orjson.dumps(error, default=str).decode(),
        claim.message_id,
        claim.token,
    )
    return bool(rows)


async def release_lease(message_id: uuid.UUID, token: uuid.UUID) -> None:
    """Give back a lease whose holder never called the provider: due again now, and this
    attempt counted as released (no doubt for the next holder)."""
    await Message.raw(
        "UPDATE message_outbox SET locked_until = NULL, lock_token = NULL,"
        " released_attempts = attempts WHERE message_id = {} AND lock_token = {}",
        message_id,
        token,
    )


async def release(message_id: uuid.UUID) -> None:
    """Drop a row whose message no longer needs sending (gone, or already settled)."""
    await Message.raw("DELETE FROM message_outbox WHERE message_id = {}", message_id)


async def due(older_than_seconds: float, limit: int) -> list[uuid.UUID]:
    """Rows due for at least `older_than_seconds` and not leased (an expired lease is free)."""
    rows = await Message.raw(_DUE, float(older_than_seconds), limit)
    return [row["message_id"] for row in rows]
