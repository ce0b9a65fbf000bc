"""take_send_token: one reservation and at most one sleep per send, refused beyond max_wait.

Sleeps are recorded instead of slept and the limiter's clock stands still, so the test
sees the exact slot each send was given without timing anything.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from guiche_meta_cloud import throughput
from guiche_meta_cloud.throughput import take_send_token
from redis.asyncio import Redis

from guiche.channels import RetryableSendError
from guiche.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter, Reservation


class CountingLimiter:
    """Passes reservations through, counting them (no acquire: sends must not poll)."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner
        self.reservations = 0

    async def reserve(self, key: str, **kwargs: Any) -> Reservation:
        self.reservations += 1
        return await self.inner.reserve(key, **kwargs)


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[CountingLimiter]:
    now = 1_000.0
    if request.param == "memory":
        yield CountingLimiter(MemoryRateLimiter(clock=lambda: now))
        return
    redis = Redis.from_url(request.getfixturevalue("require_redis"))
    inner = RedisRateLimiter(redis, prefix=f"test:{uuid.uuid4().hex}:", clock=lambda: now)
    yield CountingLimiter(inner)
    await redis.aclose()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(throughput.asyncio, "sleep", record)
    return slept


async def test_concurrent_sends_sleep_once_each_until_their_own_slot(
    limiter: CountingLimiter, sleeps: list[float]
) -> None:
    await asyncio.gather(*(take_send_token(limiter, "number", 80) for _ in range(100)))
    assert limiter.reservations == 100  # one limiter round trip per send, no polling
    # the burst of 80 goes at once; the other 20 sleep once, 1/80 s apart
    assert sorted(sleeps) == pytest.approx([n / 80 for n in range(1, 21)])


async def test_a_slot_beyond_max_wait_is_handed_back_to_the_queue(
    limiter: CountingLimiter, sleeps: list[float]
) -> None:
    for _ in range(4):  # a burst of 2, then slots 0.5 s and 1 s away
        await take_send_token(limiter, "number", 2, max_wait=1.0)
    for _ in range(2):  # refused twice alike: a refusal books nothing
        with pytest.raises(RetryableSendError) as caught:
            await take_send_token(limiter, "number", 2, max_wait=1.0)
        assert caught.value.code == "throughput_limited"
        assert caught.value.retry_after == pytest.approx(0.5)  # then a slot fits in 1 s
    assert sleeps == pytest.approx([0.5, 1.0])  # refused sends did not sleep
    assert limiter.reservations == 6
