"""`guiche.foundation.grouping`: concurrent callers share one flush, each gets its own
answer (or its own error), and a cancelled caller's answer is handed to `on_orphan`."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence

import pytest

from guiche.foundation.grouping import Grouper


async def test_callers_of_one_turn_share_a_flush_and_get_their_own_answers() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        flushed.append(items)
        return [item * 10 for item in items]

    grouper: Grouper[int, int] = Grouper(flush)
    answers = await asyncio.gather(*(grouper.submit(n) for n in range(5)))
    assert answers == [0, 10, 20, 30, 40]
    assert flushed == [[0, 1, 2, 3, 4]]
    assert grouper.idle


async def test_what_arrives_during_a_flush_goes_in_the_next_one() -> None:
    release = asyncio.Event()
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        flushed.append(items)
        if len(flushed) == 1:
            await release.wait()
        return items

    grouper: Grouper[int, int] = Grouper(flush, max_items=3)
    first = asyncio.create_task(grouper.submit(0))
    await asyncio.sleep(0.01)  # the first flush is running
    later = [asyncio.create_task(grouper.submit(n)) for n in range(1, 6)]
    await asyncio.sleep(0.01)
    release.set()
    assert await first == 0
    assert [await task for task in later] == [1, 2, 3, 4, 5]
    assert flushed == [[0], [1, 2, 3], [4, 5]]  # max_items per flush
    assert grouper.stats.largest == 3


async def test_an_error_answers_its_own_caller_and_a_raise_its_whole_group() -> None:
    async def flush(items: list[int]) -> Sequence[int | BaseException]:
        if 99 in items:
            raise RuntimeError("the whole statement failed")
        return [ValueError(f"bad {n}") if n < 0 else n for n in items]

    grouper: Grouper[int, int] = Grouper(flush)
    results = await asyncio.gather(
        grouper.submit(1), grouper.submit(-1), grouper.submit(2), return_exceptions=True
    )
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ValueError)
    together = await asyncio.gather(grouper.submit(3), grouper.submit(99), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in together)


async def test_a_cancelled_callers_answer_goes_to_on_orphan() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    orphans: list[tuple[int, int]] = []

    async def flush(items: list[int]) -> list[int]:
        started.set()
        await release.wait()
        return [n + 100 for n in items]

    grouper: Grouper[int, int] = Grouper(flush, on_orphan=lambda i, a: orphans.append((i, a)))
    kept = asyncio.create_task(grouper.submit(1))
    gone = asyncio.create_task(grouper.submit(2))
    await started.wait()
    gone.cancel()
    release.set()
    assert await kept == 101
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert orphans == [(2, 102)]


async def test_a_drain_cancelled_before_its_first_step_leaves_the_grouper_working() -> None:
    """Its bookkeeping lived in a `finally` an unstarted task never runs: the grouper
    then counted a drain that was gone and queued every later item behind it forever."""

    async def flush(items: list[int]) -> list[int]:
        return items

    grouper: Grouper[int, int] = Grouper(flush)
    first = asyncio.create_task(grouper.submit(1))
    await asyncio.sleep(0)  # `first` has queued its item and made a drain, not yet run
    [drain] = grouper._tasks
    drain.cancel()
    async with asyncio.timeout(10):  # a liveness guard: the stalled grouper never answers
        with pytest.raises(asyncio.CancelledError):
            await first  # nobody was left to take it
        assert grouper.idle
        assert await asyncio.gather(grouper.submit(2), grouper.submit(3)) == [2, 3]
    assert grouper.idle


async def test_a_flush_does_not_run_in_the_context_of_the_caller_who_started_it() -> None:
    """A caller's context (its Piccolo transaction, for one) is not the group's."""
    current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="none")
    seen: list[str] = []

    async def flush(items: list[int]) -> list[int]:
        seen.append(current.get())
        return items

    grouper: Grouper[int, int] = Grouper(flush)
    current.set("a caller's transaction")
    assert await grouper.submit(1) == 1
    assert seen == ["none"]
