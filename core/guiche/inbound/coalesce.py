"""Concurrent webhooks stored together: one transaction for many acknowledgements.

A webhook's cost is mostly per transaction (a commit, its round trips, a wake-up on a
shared CPU), not per message: twenty messages in one statement cost little more than
one. So the common webhook (messages only, senders with phones) does not commit alone:
`IngestCoalescer.store` queues its rows and one drain task stores every queued webhook
in one transaction, one `guiche_ingest_messages` call per channel, then answers each
caller with its own part. A lone webhook waits at most `ingest_coalesce_window_ms`;
under load, at most half the pool's connections store groups at once and whatever
arrives meanwhile is taken by the next group, up to `ingest_coalesce_max_messages`
messages (big groups in one transaction at a time would leave Postgres's CPUs idle).

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
    max_messages: int = 200
    max_transactions: int = 4
    stats: CoalescerStats = field(default_factory=CoalescerStats)
    _queue: list[_Waiting] = field(default_factory=list)
    _drains: set[asyncio.Task[None]] = field(default_factory=set)  # referenced while running
    _running: int = 0  # counted in step with the queue checks (no await between them)
    _idle: int = 0  # drains waiting out their window: they will take what is queued

    async def store(self, channel: ChannelRow, rows: Sequence[Incoming]) -> Stored:
        """Store one webhook's rows with whatever else is queued; returns after the commit."""
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(channel, rows, done))
        if not self._idle and self._running < self.max_transactions:
            self._running += 1
            drain = asyncio.create_task(self._run(), name="guiche-ingest-coalescer")
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        return await done

    async def _run(self) -> None:
        """Store groups until the queue is empty. At most `max_transactions` run at once
        (the database's two CPUs stay busy); what arrives meanwhile waits for the next."""
        try:
            while self._queue:
                self._idle += 1
                try:
                    await asyncio.sleep(self.window)  # 0: one turn of the loop
                finally:
                    self._idle -= 1
                group = self._take()
                if group:
                    await self._settle(group)
        finally:
            self._running -= 1

    async def _settle(self, group: list[_Waiting]) -> None:
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
    # One order for every transaction (by channel), so concurrent ones wait, not deadlock.
    statements.sort(key=lambda statement: statement[0].id)
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
            max_transactions=max(1, settings.db_pool_max // 2),
        )
    return coalescer
