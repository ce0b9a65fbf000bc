"""Login throttling: fixed-window counters per client IP and per email.

Every attempt counts against the IP (spraying many accounts from one place); only
failures count against the email (guessing one account's password), and a successful
login clears that counter. Counters live in Redis when configured, so every web
process shares them; otherwise in this process's memory.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from guiche.services import Services
from guiche.web.errors import TooManyRequests

log = logging.getLogger("guiche.auth")

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


@dataclass(frozen=True)
class Count:
    value: int
    retry_after: float  # seconds until the window resets


class Counters(Protocol):
    async def hit(self, key: str, window: int) -> Count: ...

    async def peek(self, key: str) -> Count: ...

    async def clear(self, key: str) -> None: ...


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

    async def peek(self, key: str) -> Count:
        entry = self._live(key)
        return Count(entry[0], entry[1] - self._clock()) if entry else Count(0, 0.0)

    async def clear(self, key: str) -> None:
        self._windows.pop(key, None)


class RedisCounters:
    """Counters shared by every process of the deployment."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._hit = redis.register_script(_HIT_SCRIPT)

    async def hit(self, key: str, window: int) -> Count:
        count, ttl = await self._hit(keys=[key], args=[window])
        return Count(int(count), float(ttl))

    async def peek(self, key: str) -> Count:
        async with self._redis.pipeline(transaction=False) as pipe:
            value, ttl = await pipe.get(key).ttl(key).execute()
        return Count(int(value or 0), float(max(ttl, 0)))

    async def clear(self, key: str) -> None:
        await self._redis.delete(key)


class LoginThrottle:
    def __init__(
        self,
        counters: Counters,
        *,
        namespace: str,
        max_per_ip: int,
        max_per_email: int,
        window: int,
    ) -> None:
        self.counters = counters
        self._namespace = namespace
        self._max_ip = max_per_ip
        self._max_email = max_per_email
        self._window = window

    def ip_key(self, ip: str) -> str:
        return f"guiche:{self._namespace}:login:ip:{ip}"

    def email_key(self, email: str) -> str:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        return f"guiche:{self._namespace}:login:email:{digest}"

    async def before_attempt(self, ip: str, email: str) -> None:
        """Count the attempt against the IP; raise 429 when the IP or the email is over."""
        try:
            per_ip = await self.counters.hit(self.ip_key(ip), self._window)
            if per_ip.value > self._max_ip:
                raise TooManyRequests(
                    "Too many login attempts from this address; try again later",
                    retry_after=per_ip.retry_after,
                )
            per_email = await self.counters.peek(self.email_key(email))
        except RedisError:
            log.warning("login throttle unavailable (Redis error); allowing the attempt")
            return
        if per_email.value >= self._max_email:
            raise TooManyRequests(
                "Too many failed logins for this account; try again later",
                retry_after=per_email.retry_after,
            )

    async def failed(self, email: str) -> None:
        try:
            await self.counters.hit(self.email_key(email), self._window)
        except RedisError:
            log.warning("login throttle unavailable (Redis error); failure not counted")

    async def succeeded(self, email: str) -> None:
        try:
            await self.counters.clear(self.email_key(email))
        except RedisError:
            log.warning("login throttle unavailable (Redis error); counter not cleared")


_EXTRAS_KEY = "guiche.auth.login_throttle"


def login_throttle(services: Services) -> LoginThrottle:
    """The app's throttle, built on first use (Redis is connected only once the app runs)."""
    throttle = services.extras.get(_EXTRAS_KEY)
    if throttle is None:
        settings = services.settings
        counters: Counters = (
            RedisCounters(services.redis) if services.redis is not None else MemoryCounters()
        )
        throttle = LoginThrottle(
            counters,
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
