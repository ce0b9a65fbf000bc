"""Concurrent callers' small requests answered by one call: a round trip for many.

On a host whose CPUs the database and Redis share with us, a request's cost is mostly
its round trip (a wake-up of the server, a wake-up of ours), not its size. `Grouper`
lets each caller `await grouper.submit(item)` as if it were alone, while one *flush*
(`flush(items) -> answers`, in the items' order) serves every item submitted meanwhile.

No timer holds a caller back: a flush starts on the next turn of the event loop (or
after `window` seconds, when given), and what arrives while flushes are running goes
into the next, as soon as one ends: a lone caller pays one loop turn and a busy
process gets large groups for free. At most `max_flushes` run at once; a group carries
at most `max_items`.

Each answer is its own: a flush may return an exception in an item's place, which is
raised to that caller alone; an exception *raised* by the flush goes to its whole group.
A caller cancelled while waiting leaves its item in the flush (the flush may have begun);
`on_orphan` is told of an answer nobody took, so what it holds can be given back.

A flush serves many callers, so it runs in a context of its own, not in the copy of
whichever caller started its task (that caller's Piccolo transaction, say, would be
joined by `guiche.database.engine.connection`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


@dataclass
class GroupStats:
    """How many flushes served how many items (tests and benchmarks read it)."""

    flushes: int = 0
    items: int = 0
    largest: int = 0


@dataclass
class Grouper(Generic[T, R]):
    flush: Flush[T, R]
    max_items: int = 100
    max_flushes: int = 1
    window: float = 0.0
    on_orphan: Callable[[T, R], None] | None = None
    stats: GroupStats = field(default_factory=GroupStats)
    _queue: list[tuple[T, asyncio.Future[R]]] = field(default_factory=list)
    _running: int = 0
    _idle: int = 0  # drains waiting out their turn: they will take what is queued
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)  # referenced while running

    @property
    def idle(self) -> bool:
        """Nothing queued and no flush running."""
        return not self._queue and not self._running

    async def wait_idle(self) -> None:
        """Until every flush started has ended (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def submit(self, item: T) -> R:
        """`item`'s answer, from the first flush that takes it."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._idle and self._running < self.max_flushes:
            self._start()
        return await future

    def _start(self) -> None:
        self._running += 1
        self._idle += 1  # until its first step, this turn's callers join its group
        started = [False]
        task = asyncio.create_task(
            self._drain(started), name="guiche-grouper", context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._ended, started))

    def _ended(self, started: list[bool], task: asyncio.Task[None]) -> None:
        """A drain cancelled before its first step never ran its `finally`: count it out
        here, or the grouper would wait forever for a drain that is gone, and cancel
        what it left queued if no other drain will take it (as a cancelled flush does)."""
        self._tasks.discard(task)
        if started[0]:
            return
        self._idle -= 1
        self._running -= 1
        if self._queue and not self._idle and not self._running:
            for _, future in self._queue:
                future.cancel()
            self._queue.clear()

    async def _drain(self, started: list[bool]) -> None:
        started[0] = True
        idle = True
        try:
            while True:
                if self.window:
                    await asyncio.sleep(self.window)
                group = self._queue[: self.max_items]
                del self._queue[: len(group)]
                idle = False
                self._idle -= 1
                if group:
                    await self._run(group)
                if not self._queue:
                    return
                idle = True
                self._idle += 1  # what arrived meanwhile: the next group, at once
        finally:
            if idle:
                self._idle -= 1
            self._running -= 1

    async def _run(self, group: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in group]
        try:
            answers = await self.flush(items)
            if len(answers) != len(items):
                raise RuntimeError(f"a flush answered {len(answers)} of {len(items)} items")
        except BaseException as exc:
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                for _, future in self._queue:
                    future.cancel()
                self._queue.clear()
                raise
            return
        self.stats.flushes += 1
        self.stats.items += len(items)
        self.stats.largest = max(self.stats.largest, len(items))
        for (item, future), answer in zip(group, answers, strict=True):
            if future.done():  # its caller was cancelled: the answer is nobody's
                if self.on_orphan is not None and not isinstance(answer, BaseException):
                    self.on_orphan(item, answer)
            elif isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
