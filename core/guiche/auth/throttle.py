"""Login throttling: fixed-window counters of *failed* logins per client and per account.

Failures count against the real client address (`guiche.web.ratelimit.client_ip`, which
believes X-Forwarded-For only from settings.trusted_proxies), so a company behind one
load balancer or office NAT is not locked out by its own successful logins, and against
the email (guessing one account's password); a successful login refunds its attempt and
clears the account's counter.

An attempt is reserved (counted) before the password is checked and refunded when it
succeeds, so a burst of parallel guesses cannot all pass a check made before any of them
failed. Counters live in Redis when configured, so every web process shares them. Every
count is mirrored in this process's memory: when Redis is unreachable the throttle falls
back to that per-process limit (never to none), logs the outage once, and tries Redis
again after `RETRY_SHARED_SECONDS`; an account locked before the outage stays locked.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from guiche.foundation.errors import TooManyRequests
from guiche.runtime.services import Services

log = logging.getLogger("guiche.auth")
T = TypeVar("T")

# INCR and the first EXPIRE in one step: a crash between them would leave a counter
# that never expires. The TTL repair covers keys written without one.
_HIT_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""
# Give back a reserved attempt, never resurrecting an expired window (a key without TTL).
_REFUND_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Count:
    value: int
    retry_after: float  # seconds until the window resets


class Counters(Protocol):
    async def hit(self, key: str, window: int) -> Count: ...

    async def clear(self, key: str) -> None: ...

    async def refund(self, key: str) -> None: ...


class MemoryCounters:
    """Per-process counters; expired windows are swept as the table grows."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, float]] = {}
        self._sweep_at = 1024

    def _live(self, key: str) -> tuple[int, float] | None:
        entry = self._windows.get(key)
        if entry is not None and entry[1] <= self._clock():
            del self._windows[key]
            return None
        return entry

    async def hit(self, key: str, window: int) -> Count:
        now = self._clock()
        entry = self._live(key)
        count, resets = (entry[0] + 1, entry[1]) if entry else (1, now + window)
        self._windows[key] = (count, resets)
        if len(self._windows) > self._sweep_at:
            self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
            self._sweep_at = max(1024, 2 * len(self._windows))
        return Count(count, resets - now)

    async def clear(self, key: str) -> None:
        self._windows.pop(key, None)

    async def refund(self, key: str) -> None:
        entry = self._live(key)
        if entry is not None:
            self._windows[key] = (max(entry[0] - 1, 0), entry[1])


class RedisCounters:
    """Counters shared by every process of the deployment."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._hit = redis.register_script(_HIT_SCRIPT)
        self._refund = redis.register_script(_REFUND_SCRIPT)

    async def hit(self, key: str, window: int) -> Count:
        count, ttl = await self._hit(keys=[key], args=[window])
        return Count(int(count), float(ttl))

    async def clear(self, key: str) -> None:
        await self._redis.delete(key)

    async def refund(self, key: str) -> None:
        await self._refund(keys=[key])


SHARED_TIMEOUT = 1.0
"""Seconds a Redis call may take before the throttle counts it as an outage."""
RETRY_SHARED_SECONDS = 5.0
"""During an outage, how long the throttle stays on local counters before trying Redis."""


class LoginThrottle:
    """The two limits, drawn on shared counters with a per-process fallback."""

    def __init__(
        self,
        shared: Counters | None,
        *,
        namespace: str,
        max_per_ip: int,
        max_per_email: int,
        window: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = shared
        self.local = MemoryCounters(clock)
        self._clock = clock
        self._namespace = namespace
        self._max_ip = max_per_ip
        self._max_email = max_per_email
        self._window = window
        self._down_since: float | None = None

    @property
    def counters(self) -> Counters:
        """Where counts are read from right now: Redis, or this process during an outage."""
        return self.shared if self.shared is not None and self._down_since is None else self.local

    def ip_key(self, ip: str) -> str:
        return f"guiche:{self._namespace}:login:ip:{ip}"

    def email_key(self, email: str) -> str:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        return f"guiche:{self._namespace}:login:email:{digest}"

    async def before_attempt(self, client: str, email: str) -> None:
        """Reserve one failure against the client and the account; 429 when either is over.

        A refused attempt is refunded at once: it was never checked, so it is no failure.
        """
        per_ip = await self._hit(self.ip_key(client))
        per_email = await self._hit(self.email_key(email))
        if per_ip.value > self._max_ip or per_email.value > self._max_email:
            await self._refund(self.ip_key(client))
            await self._refund(self.email_key(email))
            if per_email.value > self._max_email:
                raise TooManyRequests(
                    "Too many failed logins for this account; try again later",
                    retry_after=per_email.retry_after,
                )
            raise TooManyRequests(
                "Too many failed logins from this address; try again later",
                retry_after=per_ip.retry_after,
            )

    async def succeeded(self, client: str, email: str) -> None:
        """Give back the reserved attempt and forget the account's earlier failures."""
        await self._refund(self.ip_key(client))
        await self.local.clear(self.email_key(email))
        await self._shared(lambda shared: shared.clear(self.email_key(email)))

    async def _hit(self, key: str) -> Count:
        local = await self.local.hit(key, self._window)
        shared = await self._shared(lambda counters: counters.hit(key, self._window))
        return shared if shared is not None else local

    async def _refund(self, key: str) -> None:
        await self.local.refund(key)
        await self._shared(lambda counters: counters.refund(key))

    async def _shared(self, call: Callable[[Counters], Awaitable[T]]) -> T | None:
        """`call` on Redis, or None while it is down (logged once per outage)."""
        if self.shared is None:
            return None
        now = self._clock()
        if self._down_since is not None and now - self._down_since < RETRY_SHARED_SECONDS:
            return None
        try:
            async with asyncio.timeout(SHARED_TIMEOUT):
                result = await call(self.shared)
        except (RedisError, OSError, TimeoutError) as exc:
            if self._down_since is None:
                log.warning(
                    "login throttle: Redis unreachable (%r); limiting per process until it is back",
                    exc,
                )
            self._down_since = now
            return None
        if self._down_since is not None:
            log.warning("login throttle: Redis is back; limits are shared again")
            self._down_since = None
        return result


_EXTRAS_KEY = "guiche.auth.login_throttle"


def login_throttle(services: Services) -> LoginThrottle:
    """The app's throttle, built on first use (Redis is connected only once the app runs)."""
    throttle = services.extras.get(_EXTRAS_KEY)
    if throttle is None:
        settings = services.settings
        throttle = LoginThrottle(
            RedisCounters(services.redis) if services.redis is not None else None,
            namespace=_namespace(settings.database_url),
            max_per_ip=settings.login_max_attempts_per_ip,
            max_per_email=settings.login_max_attempts_per_email,
            window=settings.login_window_seconds,
        )
        services.extras[_EXTRAS_KEY] = throttle
    return throttle


def _namespace(database_url: str | None) -> str:
    """Deployments sharing one Redis (staging beside production) keep separate counters."""
    name = urlsplit(database_url or "").path.lstrip("/") or "default"
    return name.replace(":", "_")
