"""An agent's presence (online / away / offline): the one place it changes, and who drops it.

`set_presence` is the single writer: the WebSocket `presence` command, `PUT
/api/v1/users/{id}/status` and the tracker below all go through it, so every change is
one `operator.status` event and going online drains the company's queue.

`PresenceTracker` sets an agent offline when their last socket closes, in any process:
an agent who closed the console, or whose laptop slept, must not keep receiving
conversations. Each web process counts its own sockets per (company, user) and holds a
*lease* for each pair it has sockets for, renewed every `lease / 3` seconds, in Redis
when configured (one hash per pair, a field per process) or in memory otherwise. When a
process's last socket of a pair closes it waits `grace` seconds (a page reload is not
leaving), gives its lease up and, if no other process holds one, sets the agent offline.
A process that died leaves leases nobody renews: every process's renewal loop also
sweeps expired leases and sets their agents offline, so a crash costs at most one lease
period (`GUICHE_PRESENCE_LEASE_SECONDS`) of false presence. Presence set without any
socket (a supervisor's `PUT .../status`, an API client) is left alone: only pairs that
had a socket are tracked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from redis.asyncio import Redis

from guiche.realtime import events as ev
from guiche.realtime.events import PendingEvent, record_events
from guiche.routing.service import drain_queue

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.presence")

STATUSES = ("online", "away", "offline")

_SET = """
WITH before AS (
    SELECT id, status FROM memberships
    WHERE tenant = $1 AND "user" = $2 AND is_active
      AND ($4::varchar[] IS NULL OR status = ANY($4::varchar[]))
    FOR UPDATE
)
UPDATE memberships m
SET status = $3::varchar,
    status_changed_at = CASE WHEN before.status <> $3::varchar THEN now()
                             ELSE m.status_changed_at END
FROM before
WHERE m.id = before.id
RETURNING before.status AS previous, m.status_changed_at
"""


@dataclass(frozen=True, slots=True)
class PresenceChange:
    previous: str
    status: str
    changed_at: dt.datetime
    assigned: int  # conversations assigned from the queue because an agent came online

    @property
    def changed(self) -> bool:
        return self.previous != self.status


def presence_event(
    tenant_id: uuid.UUID, user_id: uuid.UUID, status: str, previous: str, at: dt.datetime
) -> PendingEvent:
    """The `operator.status` event of one presence change (the one shape for every writer)."""
    return PendingEvent(
        tenant_id=tenant_id,
        type=ev.OPERATOR_STATUS,
        data={"user_id": user_id, "status": status, "previous_status": previous, "changed_at": at},
    )


async def set_presence(
    services: Services,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    status: str,
    *,
    only_from: Collection[str] | None = None,
    in_transaction: Callable[[], Awaitable[None]] | None = None,
) -> PresenceChange | None:
    """Set an active seat's presence; None when there is no active seat (or, with
    `only_from`, when its status is not one of those). `in_transaction` runs inside the
    same transaction when the status changes (an audit row)."""
    published = []
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        row = await conn.fetchrow(
            _SET, tenant_id, user_id, status, list(only_from) if only_from is not None else None
        )
        if row is None:
            return None
        if row["previous"] != status:
            if in_transaction is not None:
                await in_transaction()
            event = presence_event(
                tenant_id, user_id, status, row["previous"], row["status_changed_at"]
            )
            published = await record_events(conn, [event])
    await services.bus.publish(published)
    assigned = 0
    if status == "online":  # a free agent arrived: the queue may move
        assigned = await drain_queue(services, tenant_id)
    return PresenceChange(row["previous"], status, row["status_changed_at"], assigned)


# --- leases -------------------------------------------------------------------------------

Pair = tuple[uuid.UUID, uuid.UUID]  # (tenant, user)


class LeaseStore(Protocol):
    async def hold(self, pairs: Collection[Pair], holder: str, until: float) -> None: ...

    async def release(self, pair: Pair, holder: str) -> bool:
        """Give `holder`'s lease up; True when no live lease on the pair is left."""
        ...

    async def sweep(self, now: float) -> list[Pair]:
        """Drop expired leases; the pairs left with none."""
        ...


class MemoryLeases:
    """One process (embedded mode): leases in a dict."""

    def __init__(self) -> None:
        self._leases: dict[Pair, dict[str, float]] = {}

    async def hold(self, pairs: Collection[Pair], holder: str, until: float) -> None:
        for pair in pairs:
            self._leases.setdefault(pair, {})[holder] = until

    async def release(self, pair: Pair, holder: str) -> bool:
        leases = self._leases.get(pair, {})
        leases.pop(holder, None)
        now = time.time()
        if any(until > now for until in leases.values()):
            return False
        self._leases.pop(pair, None)
        return True

    async def sweep(self, now: float) -> list[Pair]:
        orphans = []
        for pair, leases in list(self._leases.items()):
            for holder, until in list(leases.items()):
                if until <= now:
                    del leases[holder]
            if not leases:
                del self._leases[pair]
                orphans.append(pair)
        return orphans


class RedisLeases:
    """Many processes: a hash per pair (`<prefix>:<tenant>:<user>`, field = process) and
    a set of the pairs (`<prefix>:pairs`) for the sweep."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._index = f"{prefix}:pairs"

    def _key(self, pair: Pair) -> str:
        return f"{self._prefix}:{pair[0]}:{pair[1]}"

    async def hold(self, pairs: Collection[Pair], holder: str, until: float) -> None:
        if not pairs:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for pair in pairs:
                pipe.hset(self._key(pair), holder, repr(until))
                pipe.sadd(self._index, f"{pair[0]}:{pair[1]}")
            await pipe.execute()

    async def release(self, pair: Pair, holder: str) -> bool:
        key = self._key(pair)
        await self._redis.hdel(key, holder)
        return not await self._live(pair, time.time())

    async def sweep(self, now: float) -> list[Pair]:
        orphans = []
        for member in await self._redis.smembers(self._index):
            text = member.decode() if isinstance(member, bytes) else member
            tenant, _, user = text.partition(":")
            try:
                pair = (uuid.UUID(tenant), uuid.UUID(user))
            except ValueError:
                await self._redis.srem(self._index, member)
                continue
            if not await self._live(pair, now):
                await self._redis.srem(self._index, member)
                orphans.append(pair)
        return orphans

    async def _live(self, pair: Pair, now: float) -> bool:
        """Whether any unexpired lease is left; expired ones are deleted on the way."""
        key = self._key(pair)
        leases: dict[Any, Any] = await self._redis.hgetall(key)
        expired = [holder for holder, until in leases.items() if float(until) <= now]
        if expired:
            await self._redis.hdel(key, *expired)
        return len(expired) < len(leases)


class PresenceTracker:
    """This process's sockets per (company, user): the last one closing sets them offline."""

    def __init__(
        self, services: Services, store: LeaseStore, *, grace: float, lease: float
    ) -> None:
        self._services = services
        self._store = store
        self.grace = grace
        self.lease = lease
        self.holder = uuid.uuid4().hex  # this process
        self._sockets: Counter[Pair] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def opened(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        pair = (tenant_id, user_id)
        self._sockets[pair] += 1
        if self._sockets[pair] == 1:
            await self._hold([pair])

    def closed(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        pair = (tenant_id, user_id)
        if self._sockets[pair] > 1:
            self._sockets[pair] -= 1
            return
        self._sockets.pop(pair, None)
        if not self._stopping.is_set():
            self._spawn(self._left(pair))

    def start(self) -> None:
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew(), name="guiche-presence-renewer")

    def stopping(self) -> None:
        """The process is shutting down (call before its sockets are closed): sockets
        closing from now on set nobody offline, and checks waiting out their grace end.
        A restart must not flip every agent offline: they reconnect, or their leases
        expire and another process's (or the next start's) sweep sets them offline."""
        self._stopping.set()

    async def stop(self) -> None:
        """Wait for the renewer and pending checks to end (none is cancelled mid-query)."""
        self.stopping()
        tasks = [*self._tasks, *([self._renewer] if self._renewer else [])]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._renewer = None

    async def sweep(self) -> int:
        """Set offline the agents whose every lease expired (a process died); their count."""
        orphans = await self._store.sweep(time.time())
        dropped = 0
        for tenant_id, user_id in orphans:
            if (tenant_id, user_id) not in self._sockets:
                dropped += await self._offline(tenant_id, user_id)
        return dropped

    async def _left(self, pair: Pair) -> None:
        if self.grace > 0 and await self._stopped_within(self.grace):
            return
        if pair in self._sockets or self._stopping.is_set():  # came back within the grace
            return
        try:
            if await self._store.release(pair, self.holder):
                await self._offline(*pair)
        except Exception:
            log.exception("presence not updated after the last socket closed")

    async def _offline(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> int:
        change = await set_presence(
            self._services, tenant_id, user_id, "offline", only_from=("online", "away")
        )
        if change is not None and change.changed:
            log.info(
                "agent offline: no socket left",
                extra={"tenant": str(tenant_id), "user": str(user_id)},
            )
            return 1
        return 0

    async def _hold(self, pairs: Collection[Pair]) -> None:
        try:
            await self._store.hold(pairs, self.holder, time.time() + self.lease)
        except Exception:  # Redis away: the next renewal retries
            log.warning("presence lease not recorded", exc_info=True)

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _renew(self) -> None:
        while not await self._stopped_within(self.lease / 3):
            await self._hold(list(self._sockets))
            try:
                await self.sweep()
            except Exception:
                log.warning("presence sweep failed", exc_info=True)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
