"""A worker's concurrent sends share their claim and their settle statements.

Each `core.send_message` runs alone (its own claim, provider call and settle, see
`guiche.outbound.sender`), but a worker runs up to a hundred at once, and each used to
pay its own round trip and commit to claim its outbox row and to settle it. Here those
two statements are grouped across the sends of one process (`guiche.foundation.grouping`:
no timer, a group is whatever arrived while the previous statement ran):

- **claim + load**: one `UPDATE … RETURNING` leases every due row of the group (one lease
  token for all; a row's lease is its id and the token) and loads its message. A row
  that is not due, leased elsewhere or locked by a concurrent claim or settle is
  skipped, as before; the same id twice in a group is claimed for the first only.
- **settle sent**: one `guiche_settle_sent_many` call settles every accepted send of the
  group, in lock order. Its outcome per message is `guiche_settle_sent`'s, so `slow` and
  `skipped` take the full path for that message alone. If the group's statement fails
  for one message's sake, none is settled and each is settled again on its own, so the
  error stays that message's; the database away fails the group, and each sender retries
  its settle as before (`sender._settling`).

Statuses, events and the claim's meaning (`guiche.outbound.outbox`) are unchanged.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guiche.database.engine import connection, database_unavailable
from guiche.foundation.grouping import Grouper
from guiche.outbound import outbox

if TYPE_CHECKING:
    from guiche.runtime.services import Services

MAX_GROUP = 100
"""Sends per statement: a worker's concurrency (`guiche.worker.MAX_CONCURRENT_TASKS`)."""
MAX_IN_FLIGHT = 100
"""Sends a process runs at once (`sender.send_message`): a task may carry 50 ids, so
taskiq's limit of 100 tasks no longer bounds them; more would only queue on the HTTP
pool and book limiter slots beyond `max_wait`, to be refused and retried."""
MAX_STATEMENTS = 2
"""Groups in flight at once per statement kind: one per database CPU on the reference host."""

# The claim and the messages it leases (`m.id` is NULL when the message is gone).
CLAIM_AND_LOAD = f"""
WITH claimed AS ({outbox.CLAIM_MANY})
SELECT k.message_id AS claim_id, k.tenant AS claim_tenant,
       k.message_created_at AS claim_created_at, k.attempts, k.in_doubt,
       m.id, m.created_at, m.tenant, m.conversation, m.channel, m.direction, m.status,
       m.payload, c.department, c.assignee
FROM claimed k
LEFT JOIN messages m
  ON m.id = k.message_id AND m.created_at = k.message_created_at AND m.tenant = k.tenant
LEFT JOIN conversations c ON c.id = m.conversation
"""

SETTLE_SENT = "SELECT * FROM guiche_settle_sent($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
"""One accepted send settled: see the migration that creates `guiche_settle_sent`."""

SETTLE_SENT_MANY = (
    "SELECT * FROM guiche_settle_sent_many("
    "$1::uuid[], $2::timestamptz[], $3::varchar[], $4::varchar[], $5::uuid[], $6::uuid[],"
    " $7::text[], $8::uuid[], $9::uuid[], $10::uuid[], $11::text[])"
)

LOCK_ARG = 6
"""Index of the key's advisory lock name in `SETTLE_SENT`'s arguments (the group's order)."""


@dataclass(frozen=True)
class Claimed:
    """A won lease's row (claim columns and the message's) and its token."""

    row: Any
    token: uuid.UUID


class SendGroups:
    """The claim and settle groups of one process (`groups_for`)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.claims: Grouper[tuple[uuid.UUID, float], Claimed | None] = Grouper(
            self._claim, max_items=MAX_GROUP, max_flushes=MAX_STATEMENTS, on_orphan=self._orphan
        )
        self.settles: Grouper[tuple[Any, ...], Any] = Grouper(
            self._settle, max_items=MAX_GROUP, max_flushes=MAX_STATEMENTS
        )

    async def claim(self, message_id: uuid.UUID, lease: float) -> Claimed | None:
        """Lease the row and load its message; None when settled, leased elsewhere or
        not due."""
        return await self.claims.submit((message_id, lease))

    async def settle_sent(self, *args: Any) -> Any:
        """`guiche_settle_sent(*args)`'s row (`outcome`, `seq`, `created_at`)."""
        return await self.settles.submit(args)

    async def _claim(self, items: list[tuple[uuid.UUID, float]]) -> Sequence[Claimed | None]:
        token = uuid.uuid4()
        lease = max(lease for _, lease in items)  # one setting: all equal
        async with connection(self.services.db) as conn:
            rows = await conn.fetch(
                CLAIM_AND_LOAD, float(lease), token, list({i for i, _ in items})
            )
        won = {row["claim_id"]: Claimed(row, token) for row in rows}
        return [won.pop(message_id, None) for message_id, _ in items]

    async def _settle(self, items: list[tuple[Any, ...]]) -> Sequence[Any]:
        if len(items) == 1 or len({item[0] for item in items}) < len(items):
            return await self._apart(items)
        order = sorted(range(len(items)), key=lambda i: items[i][LOCK_ARG])
        columns = [[items[i][arg] for i in order] for arg in range(len(items[0]))]
        try:
            async with connection(self.services.db) as conn:
                rows = await conn.fetch(SETTLE_SENT_MANY, *columns)
        except Exception as exc:
            if database_unavailable(exc):
                raise  # every sender retries its own settle while its lease lasts
            return await self._apart(items)
        by_message = {row["message"]: row for row in rows}
        return [by_message[item[0]] for item in items]

    def _orphan(self, item: tuple[uuid.UUID, float], claimed: Claimed | None) -> None:
        """A claim whose sender was cancelled before it got it: nothing was sent, so the
        lease is released as a clean attempt (not left to expire into a doubt)."""
        if claimed is not None:
            self.services.spawn(
                outbox.release_lease(item[0], claimed.token), name="guiche-claim-orphan"
            )

    async def _settle_one(self, args: tuple[Any, ...]) -> Any:
        async with connection(self.services.db) as conn:
            return await conn.fetchrow(SETTLE_SENT, *args)

    async def _apart(self, items: list[tuple[Any, ...]]) -> list[Any]:
        """Each settle in its own statement: an error answers its own sender only."""
        answers: list[Any] = []
        for args in items:
            try:
                answers.append(await self._settle_one(args))
            except Exception as exc:
                answers.append(exc)
        return answers


def groups_for(services: Services) -> SendGroups:
    """The send groups of these services (one per worker or app), made on first use."""
    groups = services.send_groups
    if groups is None:
        groups = services.send_groups = SendGroups(services)
    return groups
