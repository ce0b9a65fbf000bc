"""The event bus: in-process for the embedded mode, Redis pub/sub for many web processes.

Delivery is at-most-once by design (pub/sub); the durable `events` log covers gaps.

Besides events the bus carries *notices*: small control messages between processes
(e.g. "drop your cached copy of channel X"), never recorded and never shown to sockets.
After a lost Redis connection the reader sends its own listeners `RECONNECTED`, since
notices may have been missed meanwhile.

`RedisBus.publish` does not wait for Redis: it queues the encoded events and one flusher
task sends everything queued so far in one pipeline (one write), the next batch only after
the previous one went out. Under load the events of many concurrent webhooks share a
write (each write syscall wakes Redis, a process competing for the same CPUs), while the
order of publishes (hence each tenant's order) is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import orjson
from redis.asyncio import Redis

from guiche.foundation.jsonio import dumps
from guiche.realtime.events import BusEvent

log = logging.getLogger("guiche.bus")

Listener = Callable[[BusEvent], Awaitable[None] | None]
Notice = dict[str, str]
NoticeListener = Callable[[Notice], None]
REDIS_CHANNEL = "guiche:events"
RECONNECTED: Notice = {"bus": "reconnected"}
MAX_PENDING = 100_000
"""Encoded events queued at most while Redis is slow; beyond it the oldest are dropped
(logged): memory stays bounded if Redis hangs, and clients resync from the log."""
FLUSH_TIMEOUT = 5.0
"""Seconds `RedisBus.stop` waits for queued events to go out (Redis may be gone)."""


def bus_channel(database_url: str | None) -> str:
    """One channel per database, so deployments (and test sessions) sharing a Redis stay apart."""
    name = (database_url or "").rsplit("/", 1)[-1].split("?", 1)[0]
    return f"{REDIS_CHANNEL}:{name}" if name else REDIS_CHANNEL


class EventBus(Protocol):
    async def publish(self, events: Sequence[BusEvent]) -> None: ...

    def subscribe(self, listener: Listener) -> Callable[[], None]: ...

    async def notify(self, notice: Notice) -> None: ...

    def on_notice(self, listener: NoticeListener) -> Callable[[], None]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _Listeners:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._notice_listeners: list[NoticeListener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def on_notice(self, listener: NoticeListener) -> Callable[[], None]:
        self._notice_listeners.append(listener)
        listeners = self._notice_listeners
        return lambda: listeners.remove(listener) if listener in listeners else None

    def dispatch_notice(self, notice: Notice) -> None:
        for listener in list(self._notice_listeners):
            try:
                listener(notice)
            except Exception:
                log.exception("notice listener failed")

    async def dispatch(self, event: BusEvent) -> None:
        for listener in list(self._listeners):
            try:
                result = listener(event)
                if result is not None:
                    await result
            except Exception:  # one bad listener must not starve the others
                log.exception("event listener failed", extra={"event_type": event.type})


class MemoryBus(_Listeners):
    """Delivers to listeners in this process only (embedded mode, single web process)."""

    async def publish(self, events: Sequence[BusEvent]) -> None:
        for event in events:
            await self.dispatch(event)

    async def notify(self, notice: Notice) -> None:
        self.dispatch_notice(notice)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisBus(_Listeners):
    """Publishes to one Redis channel; every process's reader dispatches to its listeners."""

    def __init__(self, redis: Redis, channel: str = REDIS_CHANNEL) -> None:
        super().__init__()
        self._redis = redis
        self._channel = channel
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._pending: list[bytes] = []
        self._flusher: asyncio.Task[None] | None = None

    async def publish(self, events: Sequence[BusEvent]) -> None:
        """Queue `events` (encoded now, as they are) for the flusher; returns at once.

        A failed send is logged and its batch dropped (pub/sub is at-most-once; the
        `events` log covers the gap), never raised into a caller whose work committed.
        """
        if not events:
            return
        self._pending.extend(dumps(event.document()) for event in events)
        if len(self._pending) > MAX_PENDING:
            dropped = len(self._pending) - MAX_PENDING
            del self._pending[:dropped]
            log.warning("events not published: Redis is not keeping up", extra={"events": dropped})
        if self._flusher is None:
            # Runs on the next loop iteration: every publish of this turn joins the batch.
            self._flusher = asyncio.create_task(self._flush(), name="guiche-bus-flusher")

    async def _flush(self) -> None:
        """Send what is queued in one pipeline; repeat while more arrived meanwhile."""
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for message in batch:
                            pipe.publish(self._channel, message)
                        await pipe.execute()
                except Exception:
                    log.exception("events not published", extra={"events": len(batch)})
        finally:
            self._flusher = None

    async def notify(self, notice: Notice) -> None:
        """Publish a notice to every process's notice listeners (this one's included)."""
        await self._redis.publish(self._channel, orjson.dumps({"notice": notice}))

    async def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="guiche-bus-reader")
            await self._ready.wait()

    async def stop(self) -> None:
        """Send what is still queued (for at most `FLUSH_TIMEOUT`), then stop reading."""
        if self._flusher is not None:
            try:
                async with asyncio.timeout(FLUSH_TIMEOUT):
                    await self._flusher
            except TimeoutError:
                log.warning("bus stopped with events unsent", extra={"events": len(self._pending)})
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    async def _read(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                if self._ready.is_set():  # a reconnection: notices may have been lost
                    self.dispatch_notice(RECONNECTED)
                self._ready.set()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        payload = orjson.loads(message["data"])
                        if isinstance(payload, dict) and "notice" in payload:
                            self.dispatch_notice(payload["notice"])
                            continue
                        event = BusEvent.model_validate(payload)
                    except ValueError:
                        log.warning("dropping malformed bus message")
                        continue
                    await self.dispatch(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus reader lost Redis; reconnecting")
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
