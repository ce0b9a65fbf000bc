"""Token-bucket rate limiting, in process memory or shared through Redis.

One limiter serves every caller that needs throughput control: the HTTP request limit,
provider send rates, campaigns. A bucket holds up to `burst` tokens and refills at `rate`
tokens per second; an action costing `cost` tokens goes ahead only when that many are
there. Both backends run the same arithmetic (the Redis one in a Lua script, so
concurrent processes cannot race between reading and writing a bucket).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from redis.asyncio import Redis


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until `cost` tokens are there (0 when allowed)
    remaining: int  # whole tokens left after this decision


class RateLimiter(Protocol):
    async def acquire(self, key: str, *, rate: float, burst: int, cost: int = 1) -> Decision: ...


def _check(rate: float, burst: int, cost: int) -> None:
    if rate <= 0:
        raise ValueError("rate must be > 0 tokens per second")
    if burst < 1:
        raise ValueError("burst must be >= 1")
    if not 1 <= cost <= burst:
        raise ValueError("cost must be between 1 and burst (a larger cost could never pass)")


def _ttl_ms(rate: float, burst: int) -> int:
    """How long an idle bucket matters: after a full refill it equals a fresh one."""
    return math.ceil(burst / rate * 1000) + 1000


class MemoryRateLimiter:
    """Buckets in this process's memory: for a single process (embedded mode, tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, float]] = {}  # key -> tokens, ts, expires
        self._sweep_at = 1024

    async def acquire(self, key: str, *, rate: float, burst: int, cost: int = 1) -> Decision:
        _check(rate, burst, cost)
        now = self._clock()
        tokens, ts, _ = self._buckets.get(key, (float(burst), now, 0.0))
        tokens = min(float(burst), tokens + max(0.0, now - ts) * rate)
        retry_after = 0.0
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        else:
            retry_after = (cost - tokens) / rate
        self._buckets[key] = (tokens, now, now + _ttl_ms(rate, burst) / 1000)
        self._sweep(now)
        return Decision(allowed, retry_after, math.floor(tokens))

    def _sweep(self, now: float) -> None:
        if len(self._buckets) <= self._sweep_at:
            return
        self._buckets = {k: v for k, v in self._buckets.items() if v[2] > now}
        self._sweep_at = max(1024, 2 * len(self._buckets))


# Same arithmetic as MemoryRateLimiter. Floats travel as "%.17g" strings: Redis would
# truncate Lua numbers to integers on return, and shorter formats would round them.
_ACQUIRE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry_after = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_after = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return {allowed, string.format('%.17g', retry_after), math.floor(tokens)}
"""


class RedisRateLimiter:
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
        self._script = redis.register_script(_ACQUIRE_SCRIPT)

    async def acquire(self, key: str, *, rate: float, burst: int, cost: int = 1) -> Decision:
        _check(rate, burst, cost)
        now = self._clock() if self._clock is not None else -1.0
        args = [repr(float(rate)), burst, cost, repr(float(now)), _ttl_ms(rate, burst)]
        allowed, retry_after, remaining = await self._script(keys=[self._prefix + key], args=args)
        return Decision(bool(allowed), float(retry_after), int(remaining))


def build_limiter(redis: Redis | None, database_url: str | None = None) -> RateLimiter:
    """Redis-backed when Redis is configured, else per-process memory.

    Keys are namespaced by database name, so deployments sharing one Redis (staging
    beside production) keep separate buckets.
    """
    if redis is None:
        return MemoryRateLimiter()
    name = urlsplit(database_url or "").path.lstrip("/") or "default"
    return RedisRateLimiter(redis, prefix=f"guiche:{name.replace(':', '_')}:rl:")
