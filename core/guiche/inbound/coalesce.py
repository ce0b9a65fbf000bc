"""Concurrent webhooks stored together: one transaction for many acknowledgements.

A webhook's cost is mostly per transaction (a commit, its round trips, a wake-up on a
shared CPU), not per message: twenty messages in one statement cost little more than
one. So the common webhook (messages only, senders with phones) does not commit alone:
`IngestCoalescer.store` queues its rows and one drain task stores every queued webhook
in one transaction, one `guiche_ingest_messages` call per channel, then answers each
caller with its own part. Nobody waits for a timer when the process is idle: a lone
webhook is stored at once (after at most `ingest_coalesce_window_ms`); under load,
whatever arrives while a transaction runs is taken by the next one, up to
`ingest_coalesce_max_messages` messages.

Each caller still acknowledges its provider only after that commit. A failure is its
own: if the database refuses the group for its content (`STORE_ERRORS`), each webhook
is stored again alone, so the culprit fails (and `ingest` isolates its message) while
its neighbours are kept; a retryable failure (deadlock) retries the whole group; the
database away fails every caller, who answer 5xx and are redelivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guiche.database.engine import connection, retrying
from guiche.inbound.storable import STORE_ERRORS
from guiche.inbound.store import Incoming, Stored, store_messages, store_parts

if TYPE_CHECKING:
    from guiche.channel_host.runtime import ChannelRow
    from guiche.runtime.services import Services


@dataclass
class _Waiting:
    channel: ChannelRow
    rows: Sequence[Incoming]
    done: asyncio.Future[Stored]


@dataclass
class CoalescerStats:
    """Counters for tests and metrics: how many webhooks each transaction carried."""

    transactions: int = 0
    webhooks: int = 0
    apart: int = 0  # groups stored again webhook by webhook after a refusal
    largest: int = 0


@dataclass
class IngestCoalescer:
    services: Services
    window: float = 0.001
    max_messages: int = 1000
    stats: CoalescerStats = field(default_factory=CoalescerStats)
    _queue: list[_Waiting] = field(default_factory=list)
    _drain: asyncio.Task[None] | None = None

    async def store(self, channel: ChannelRow, rows: Sequence[Incoming]) -> Stored:
        """Store one webhook's rows with whatever else is queued; returns after the commit."""
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(channel, rows, done))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run(), name="guiche-ingest-coalescer")
        return await done

    async def _run(self) -> None:
        """Store groups until the queue is empty; one transaction at a time per process,
        so what arrives during one is gathered for the next."""
        while self._queue:
            if self.window > 0:
                await asyncio.sleep(self.window)
            group = self._take()
            try:
                await self._store_group(group)
            except BaseException as exc:  # never leave a caller waiting
                for waiting in group:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    for waiting in self._queue:
                        waiting.done.cancel()
                    self._queue.clear()
                    raise

    def _take(self) -> list[_Waiting]:
        group: list[_Waiting] = []
        count = 0
        while self._queue and (not group or count + len(self._queue[0].rows) <= self.max_messages):
            waiting = self._queue.pop(0)
            group.append(waiting)
            count += len(waiting.rows)
        return group

    async def _store_group(self, group: list[_Waiting]) -> None:
        async with connection(self.services.db) as conn:
            try:
                results = await retrying(lambda: _together(conn, group), what="webhook ingest")
            except STORE_ERRORS:
                if len(group) == 1:
                    raise
                self.stats.apart += 1
                await self._apart(conn, group)
                return
        self.stats.transactions += 1
        self.stats.webhooks += len(group)
        self.stats.largest = max(self.stats.largest, len(group))
        for waiting, stored in zip(group, results, strict=True):
            if not waiting.done.done():
                waiting.done.set_result(stored)

    async def _apart(self, conn: Any, group: list[_Waiting]) -> None:
        """Each webhook in its own transaction: a refusal answers its own caller only."""
        for waiting in group:
            try:
                stored = await retrying(
                    lambda w=waiting: store_messages(conn, w.channel, w.rows),
                    what="webhook ingest",
                )
            except STORE_ERRORS as exc:
                waiting.done.set_exception(exc)
                continue
            self.stats.transactions += 1
            self.stats.webhooks += 1
            waiting.done.set_result(stored)


async def _together(conn: Any, group: list[_Waiting]) -> list[Stored]:
    """The group in one transaction: one statement per run of webhooks of one channel
    whose provider ids do not repeat (a repeat goes to the next statement, where the
    key it claims is already taken: a duplicate, as if it had come later)."""
    results: list[Stored | None] = [None] * len(group)
    async with conn.transaction():
        for channel, indexes in _statements(group):
            parts = await store_parts(conn, channel, [group[i].rows for i in indexes])
            for index, stored in zip(indexes, parts, strict=True):
                results[index] = stored
    return [stored or Stored() for stored in results]


def _statements(group: list[_Waiting]) -> list[tuple[ChannelRow, list[int]]]:
    statements: list[tuple[ChannelRow, list[int], set[str]]] = []
    for index, waiting in enumerate(group):
        ids = {row.message.provider_message_id for row in waiting.rows}
        for channel, indexes, claimed in statements:
            if channel.id == waiting.channel.id and claimed.isdisjoint(ids):
                indexes.append(index)
                claimed |= ids
                break
        else:
            statements.append((waiting.channel, [index], set(ids)))
    return [(channel, indexes) for channel, indexes, _ in statements]


def coalescer_for(services: Services) -> IngestCoalescer:
    """The coalescer of these services (one per app or worker), made on first use."""
    coalescer = services.ingest_queue
    if coalescer is None:
        settings = services.settings
        coalescer = services.ingest_queue = IngestCoalescer(
            services,
            window=settings.ingest_coalesce_window_ms / 1000,
            max_messages=settings.ingest_coalesce_max_messages,
        )
    return coalescer
