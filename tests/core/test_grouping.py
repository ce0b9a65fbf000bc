"""`guiche.foundation.grouping`: concurrent callers share one flush, each gets its own
answer (or its own error), and a cancelled caller's answer is handed to `on_orphan`."""

from __future__ import annotations

import asyncio
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
