"""Token-bucket rate limiting, in process memory or shared through Redis.

One limiter serves every caller that needs throughput control: the HTTP request limit,
provider send rates, campaigns. A bucket holds up to `burst` tokens and refills at `rate`
tokens per second; an action costing `cost` tokens goes ahead only when that many are
there. Both backends run the same arithmetic (the Redis one in a Lua script, so
concurrent processes cannot race between reading and writing a bucket).

`acquire` answers yes or no now. `reserve` instead books the next slot even when it is
up to `max_wait` seconds away (the bucket goes into debt, never deeper than
`max_wait * rate` tokens) and says how long to wait for it: many concurrent callers each
sleep once, until their own slot, instead of all waking when one token returns and all
but one going back to sleep (a thundering herd that also leaves tokens unused).
`acquire` is `reserve` with `max_wait=0`, so both can share a bucket.

Blocks: the Redis limiter books the unit reservations that concurrent callers make on one
bucket in one script call (`reserve_block`: the i-th unit gets the slot it would have had
had the calls come one after another, so the rate is exactly what it was), grouped like
`guiche.foundation.grouping` groups (no timer: those that arrive while the previous call
is in flight). A caller cancelled before its answer came back has its token refunded
(`refund`): the block books exactly what its callers asked, and gives back the rest.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from redis.asyncio import Redis

from guiche.foundation.grouping import Grouper


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until `cost` tokens are there (0 when allowed)
    remaining: int  # whole tokens left after this decision


@dataclass(frozen=True)
class Reservation:
    allowed: bool
    wait: float  # when allowed: seconds until the booked slot (0 if tokens were there)
    retry_after: float  # when refused: seconds until a reservation would fit in max_wait


class RateLimiter(Protocol):
    async def acquire(self, key: str, *, rate: float, burst: int, cost: int = 1) -> Decision: ...

    async def reserve(
        self, key: str, *, rate: float, burst: int, cost: int = 1, max_wait: float
    ) -> Reservation:
        """Book `cost` tokens if they are there within `max_wait` seconds, else take nothing.

        The booking is final: a caller that gives up (is cancelled) while waiting for
        its slot loses it, and the bucket's rate stays honoured (at worst under-used).
        """
        ...

    async def reserve_block(
        self, key: str, *, rate: float, burst: int, count: int, max_wait: float
    ) -> list[Reservation]:
        """`count` unit reservations in one update, each answered as if made in turn."""
        ...

    async def refund(self, key: str, *, rate: float, burst: int, tokens: int) -> None:
        """Give back `tokens` booked and never used (the bucket never exceeds `burst`)."""
        ...


def _check(rate: float, burst: int, cost: int) -> None:
    if rate <= 0:
        raise ValueError("rate must be > 0 tokens per second")
    if burst < 1:
        raise ValueError("burst must be >= 1")
    if not 1 <= cost <= burst:
        raise ValueError("cost must be between 1 and burst (a larger cost could never pass)")


def _check_wait(max_wait: float) -> None:
    if not 0 <= max_wait < math.inf:
        raise ValueError("max_wait must be >= 0 and finite (it bounds the bucket's debt)")


def _take(
    tokens: float, elapsed: float, *, rate: float, burst: int, cost: int, max_wait: float
) -> tuple[bool, float, float]:
    """The bucket arithmetic: (allowed, wait if allowed else retry_after, tokens after).

    Tokens below zero are booked slots; the Lua script below mirrors this line by line.
    """
    tokens = min(float(burst), tokens + max(0.0, elapsed) * rate)
    wait = max(0.0, (cost - tokens) / rate)
    if wait <= max_wait:
        return True, wait, tokens - cost
    return False, wait - max_wait, tokens


def _take_block(
    tokens: float, elapsed: float, *, rate: float, burst: int, count: int, max_wait: float
) -> tuple[int, float]:
    """`count` unit reservations at once: (how many fit in `max_wait`, tokens before them).

    Unit i (from 1) waits `(i - tokens) / rate`, as the i-th of `count` calls of `_take`
    in a row would; those past `max_wait` get nothing. Mirrored by `_BLOCK_SCRIPT`.
    """
    tokens = min(float(burst), tokens + max(0.0, elapsed) * rate)
    fit = math.floor(tokens + max_wait * rate + 1e-9)
    return max(0, min(count, fit)), tokens


def _block_reservations(
    granted: int, tokens: float, *, rate: float, count: int, max_wait: float
) -> list[Reservation]:
    """Each unit's answer from a block's result (`_take_block`'s)."""
    answers = [Reservation(True, max(0.0, (i - tokens) / rate), 0.0) for i in range(1, granted + 1)]
    left = tokens - granted
    refused = Reservation(False, 0.0, max(0.0, (1 - left) / rate - max_wait))
    return answers + [refused] * (count - granted)


def _refill(tokens: float, elapsed: float, *, rate: float, burst: int, back: int) -> float:
    """A refund: `back` unused tokens returned to the bucket, which never exceeds `burst`."""
    return min(float(burst), tokens + max(0.0, elapsed) * rate + back)


def _ttl_ms(rate: float, burst: int, tokens: float) -> int:
    """How long an idle bucket matters: once full again it equals a fresh one."""
    return math.ceil((burst - tokens) / rate * 1000) + 1000


class _BucketLimiter:
    """`acquire` and `reserve` over one bucket update, which each backend implements."""

    async def acquire(self, key: str, *, rate: float, burst: int, cost: int = 1) -> Decision:
        _check(rate, burst, cost)
        allowed, retry_after, tokens = await self._update(key, rate, burst, cost, 0.0)
        return Decision(allowed, 0.0 if allowed else retry_after, max(0, math.floor(tokens)))

    async def reserve(
        self, key: str, *, rate: float, burst: int, cost: int = 1, max_wait: float
    ) -> Reservation:
        _check(rate, burst, cost)
        _check_wait(max_wait)
        allowed, seconds, _ = await self._update(key, rate, burst, cost, max_wait)
        return Reservation(allowed, seconds, 0.0) if allowed else Reservation(False, 0.0, seconds)

    async def reserve_block(
        self, key: str, *, rate: float, burst: int, count: int, max_wait: float
    ) -> list[Reservation]:
        """`count` unit reservations in one update, answered in order (see `_take_block`)."""
        _check(rate, burst, 1)
        _check_wait(max_wait)
        if count < 1:
            return []
        granted, tokens = await self._update_block(key, rate, burst, count, max_wait)
        return _block_reservations(granted, tokens, rate=rate, count=count, max_wait=max_wait)

    async def refund(self, key: str, *, rate: float, burst: int, tokens: int) -> None:
        """Give back `tokens` booked and never used (never filling past `burst`)."""
        _check(rate, burst, 1)
        if tokens > 0:
            await self._refund(key, rate, burst, tokens)

    async def _update(
        self, key: str, rate: float, burst: int, cost: int, max_wait: float
    ) -> tuple[bool, float, float]:
        """Take from the bucket (see `_take`): (allowed, wait or retry_after, tokens after)."""
        raise NotImplementedError

    async def _update_block(
        self, key: str, rate: float, burst: int, count: int, max_wait: float
    ) -> tuple[int, float]:
        """Take a block (see `_take_block`): (units granted, tokens before them)."""
        raise NotImplementedError

    async def _refund(self, key: str, rate: float, burst: int, tokens: int) -> None:
        raise NotImplementedError


class MemoryRateLimiter(_BucketLimiter):
    """Buckets in this process's memory: for a single process (embedded mode, tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, float]] = {}  # key -> tokens, ts, expires
        self._sweep_at = 1024

    async def _update(
        self, key: str, rate: float, burst: int, cost: int, max_wait: float
    ) -> tuple[bool, float, float]:
        now = self._clock()
        tokens, ts, _ = self._buckets.get(key, (float(burst), now, 0.0))
        allowed, seconds, tokens = _take(
            tokens, now - ts, rate=rate, burst=burst, cost=cost, max_wait=max_wait
        )
        self._buckets[key] = (tokens, now, now + _ttl_ms(rate, burst, tokens) / 1000)
        self._sweep(now)
        return allowed, seconds, tokens

    async def _update_block(
        self, key: str, rate: float, burst: int, count: int, max_wait: float
    ) -> tuple[int, float]:
        now = self._clock()
        tokens, ts, _ = self._buckets.get(key, (float(burst), now, 0.0))
        granted, before = _take_block(
            tokens, now - ts, rate=rate, burst=burst, count=count, max_wait=max_wait
        )
        after = before - granted
        self._buckets[key] = (after, now, now + _ttl_ms(rate, burst, after) / 1000)
        self._sweep(now)
        return granted, before

    async def _refund(self, key: str, rate: float, burst: int, tokens: int) -> None:
        now = self._clock()
        if key not in self._buckets:
            return  # expired: it is full
        held, ts, _ = self._buckets[key]
        after = _refill(held, now - ts, rate=rate, burst=burst, back=tokens)
        self._buckets[key] = (after, now, now + _ttl_ms(rate, burst, after) / 1000)

    def _sweep(self, now: float) -> None:
        if len(self._buckets) <= self._sweep_at:
            return
        self._buckets = {k: v for k, v in self._buckets.items() if v[2] > now}
        self._sweep_at = max(1024, 2 * len(self._buckets))


# The scripts' shared pieces. ARGV: rate, burst, cost/count/back, now (< 0: the server's
# clock), max_wait.
_ARGS = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
"""
_NOW_AND_STATE = """if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
"""
_REFILLED = """if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
"""
_SAVE = """redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', {tokens}),
  'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - {tokens}) / rate * 1000) + 1000)
"""

# Same arithmetic as `_take`. Floats travel as "%.17g" strings: Redis would truncate
# Lua numbers to integers on return, and shorter formats would round them.
_TAKE_SCRIPT = (
    _ARGS
    + _NOW_AND_STATE
    + _REFILLED
    + """local cost = tonumber(ARGV[3])
local wait = math.max(0, (cost - tokens) / rate)
local allowed = 0
if wait <= max_wait then
  tokens = tokens - cost
  allowed = 1
else
  wait = wait - max_wait
end
"""
    + _SAVE.format(tokens="tokens")
    + """return {allowed, string.format('%.17g', wait), string.format('%.17g', tokens)}
"""
)


# `_take_block`, then `_refill`, mirrored like `_TAKE_SCRIPT` mirrors `_take`.
_BLOCK_SCRIPT = (
    _ARGS
    + _NOW_AND_STATE
    + _REFILLED
    + """local count = tonumber(ARGV[3])
local granted = math.max(0, math.min(count, math.floor(tokens + max_wait * rate + 1e-9)))
local after = tokens - granted
"""
    + _SAVE.format(tokens="after")
    + """return {granted, string.format('%.17g', tokens)}
"""
)

_REFUND_SCRIPT = (
    _ARGS
    + _NOW_AND_STATE
    + """local back = tonumber(ARGV[3])
if tokens == nil or ts == nil then
  return 0
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate + back)
"""
    + _SAVE.format(tokens="tokens")
    + """return 1
"""
)

_BlockKey = tuple[str, float, int, float]  # key, rate, burst, max_wait


class RedisRateLimiter(_BucketLimiter):
    """Buckets in Redis, shared by every process; idle buckets expire on their own.

    Time comes from the Redis server (one clock for all processes) unless a `clock`
    is given, which tests use to step time without sleeping.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "guiche:rl:",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._prefix = prefix
        self._clock = clock
        self._script = redis.register_script(_TAKE_SCRIPT)
        self._block_script = redis.register_script(_BLOCK_SCRIPT)
        self._refund_script = redis.register_script(_REFUND_SCRIPT)
        self._blocks: dict[_BlockKey, Grouper[None, Reservation]] = {}
        self._refunds: set[asyncio.Future[None]] = set()  # referenced while running

    async def reserve(
        self, key: str, *, rate: float, burst: int, cost: int = 1, max_wait: float
    ) -> Reservation:
        """A unit reservation joins the block of its bucket's concurrent ones (see the
        module's docstring); other costs go alone."""
        if cost != 1:
            return await super().reserve(key, rate=rate, burst=burst, cost=cost, max_wait=max_wait)
        _check(rate, burst, cost)
        _check_wait(max_wait)
        block = (key, float(rate), burst, float(max_wait))
        grouper = self._blocks.get(block)
        if grouper is None:
            grouper = self._blocks[block] = self._grouper(block)
        try:
            return await grouper.submit(None)
        finally:
            if grouper.idle and self._blocks.get(block) is grouper:
                del self._blocks[block]  # an idle bucket's grouper is made anew

    def _grouper(self, block: _BlockKey) -> Grouper[None, Reservation]:
        key, rate, burst, max_wait = block

        async def flush(items: list[None]) -> list[Reservation]:
            return await self.reserve_block(
                key, rate=rate, burst=burst, count=len(items), max_wait=max_wait
            )

        def orphan(_: None, reservation: Reservation) -> None:
            if reservation.allowed:  # booked for a caller who is gone: give it back
                orphans[0] += 1
                if orphans[0] == 1:
                    asyncio.get_running_loop().call_soon(give_back)

        def give_back() -> None:
            tokens, orphans[0] = orphans[0], 0
            task = asyncio.ensure_future(self.refund(key, rate=rate, burst=burst, tokens=tokens))
            self._refunds.add(task)
            task.add_done_callback(self._refunds.discard)

        orphans = [0]
        grouper: Grouper[None, Reservation] = Grouper(flush, max_items=1000, on_orphan=orphan)
        return grouper

    async def _update(
        self, key: str, rate: float, burst: int, cost: int, max_wait: float
    ) -> tuple[bool, float, float]:
        now = self._clock() if self._clock is not None else -1.0
        args = [repr(float(rate)), burst, cost, repr(float(now)), repr(float(max_wait))]
        allowed, seconds, tokens = await self._script(keys=[self._prefix + key], args=args)
        return bool(allowed), float(seconds), float(tokens)

    async def _update_block(
        self, key: str, rate: float, burst: int, count: int, max_wait: float
    ) -> tuple[int, float]:
        now = self._clock() if self._clock is not None else -1.0
        args = [repr(float(rate)), burst, count, repr(float(now)), repr(float(max_wait))]
        granted, tokens = await self._block_script(keys=[self._prefix + key], args=args)
        return int(granted), float(tokens)

    async def _refund(self, key: str, rate: float, burst: int, tokens: int) -> None:
        now = self._clock() if self._clock is not None else -1.0
        args = [repr(float(rate)), burst, tokens, repr(float(now))]
        await self._refund_script(keys=[self._prefix + key], args=args)


def build_limiter(redis: Redis | None, database_url: str | None = None) -> RateLimiter:
    """Redis-backed when Redis is configured, else per-process memory.

    Keys are namespaced by database name, so deployments sharing one Redis (staging
    beside production) keep separate buckets.
    """
    if redis is None:
        return MemoryRateLimiter()
    name = urlsplit(database_url or "").path.lstrip("/") or "default"
    return RedisRateLimiter(redis, prefix=f"guiche:{name.replace(':', '_')}:rl:")
