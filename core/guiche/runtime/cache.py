"""Per-process cache of what every webhook, send and request re-reads: loaded channels,
tenants' enabled plugin settings, companies' own settings (`guiche.contacts.locale`) and
users' access (`guiche.auth.access`).

They change only through admin actions, yet were read (a query, a decrypt, a pydantic
validation each) on every webhook, send, hook call or request. Entries are dropped:

- at once in the process making a change (`invalidate`, called after its commit);
- in every other `guiche web` / `guiche worker` process through a bus notice (Redis
  pub/sub when configured), and wholesale when the bus reconnects (notices may be lost);
- after `GUICHE_CHANNEL_CACHE_TTL_SECONDS` (default 60) in any case, the safety net for
  a lost notice or a row changed behind the application's back. 0 turns the cache off.

A load that started before an invalidation is not stored when it finishes (a generation
counter), so a stale row read mid-change cannot outlive the notice that dropped it.
Keys are (kind, id): a channel by its id (the value names its tenant), plugin settings
by tenant id, so one tenant's entry is never found under another tenant's key.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from guiche.realtime.bus import EventBus, Notice

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.cache")

CHANNEL = "channel"
TENANT_PLUGINS = "tenant_plugins"
TENANT_SETTINGS = "tenant_settings"
_EXTRAS_KEY = "guiche.runtime.cache"

Key = tuple[str, uuid.UUID]


class RuntimeCache:
    """(kind, id) → value, each entry trusted for `ttl` seconds unless dropped earlier."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[Key, tuple[float, Any]] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        """Take it before loading; pass it to `put` so a load older than a drop is discarded."""
        return self._generation

    def get(self, kind: str, key: uuid.UUID) -> Any | None:
        entry = self._entries.get((kind, key))
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[(kind, key)]
            return None
        return entry[1]

    def put(self, kind: str, key: uuid.UUID, value: Any, generation: int) -> None:
        if self.ttl > 0 and generation == self._generation:
            self._entries[(kind, key)] = (time.monotonic() + self.ttl, value)

    def drop(self, kind: str, key: uuid.UUID) -> None:
        self._generation += 1
        self._entries.pop((kind, key), None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def on_notice(self, notice: Notice) -> None:
        """The bus listener: another process (or this one) changed something."""
        kind, key = notice.get("cache"), notice.get("id")
        if kind is not None and key is not None:
            try:
                self.drop(kind, uuid.UUID(key))
            except ValueError:
                log.warning("malformed cache notice", extra={"notice": notice})
        elif notice.get("bus") == "reconnected":
            self.clear()


class _Attached:
    """The cache and the bus it listens to (the bus is replaced once Redis is opened)."""

    def __init__(self, cache: RuntimeCache, bus: EventBus) -> None:
        self.cache = cache
        self.bus = bus
        self.detach: Callable[[], None] = bus.on_notice(cache.on_notice)


def runtime_cache(services: Services) -> RuntimeCache:
    """This process's cache, created on first use and listening to the services' bus."""
    attached: _Attached | None = services.extras.get(_EXTRAS_KEY)
    if attached is None or attached.bus is not services.bus:
        if attached is not None:
            attached.detach()
        cache = RuntimeCache(services.settings.channel_cache_ttl_seconds)
        attached = _Attached(cache, services.bus)
        services.extras[_EXTRAS_KEY] = attached
    return attached.cache


async def invalidate(services: Services, kind: str, key: uuid.UUID) -> None:
    """Drop an entry here and in every other process; call it after the change commits."""
    runtime_cache(services).drop(kind, key)
    try:
        await services.bus.notify({"cache": kind, "id": str(key)})
    except Exception:  # the change is committed; the TTL bounds how stale others can be
        log.warning("cache invalidation not published", exc_info=True, extra={"kind": kind})
