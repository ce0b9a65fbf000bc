"""`RedisBus.publish` coalesces: the events of many concurrent publishers go out in one
pipeline, in the order they were published; a failed send is logged and the bus goes on;
`stop()` sends what is still queued. Real Redis, one channel per test."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from guiche.realtime.bus import RedisBus
from guiche.realtime.events import BusEvent

WAIT_SECONDS = 10.0


@pytest.fixture
async def redis(require_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(require_redis)
    yield client
    await client.aclose()


@pytest.fixture
def channel() -> str:
    return f"guiche:test-bus:{uuid.uuid4().hex}"


class Received:
    """A reading bus's events, with a wait for a count instead of sleeps."""

    def __init__(self) -> None:
        self.events: list[BusEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: BusEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int) -> list[BusEvent]:
        async with asyncio.timeout(WAIT_SECONDS):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events


@pytest.fixture
async def reader(redis: Redis, channel: str) -> AsyncIterator[Received]:
    """Another process's bus on the same channel, subscribed before anything is published."""
    bus = RedisBus(redis, channel)
    received = Received()
    bus.subscribe(received)
    await bus.start()
    yield received
    await bus.stop()


def event(tenant: uuid.UUID, seq: int) -> BusEvent:
    return BusEvent(
        tenant_id=tenant,
        type="message.new",
        data={"n": seq, "id": uuid.uuid4(), "at": dt.datetime.now(dt.UTC)},
        conversation_id=uuid.uuid4(),
        seq=seq,
        created_at=dt.datetime.now(dt.UTC),
    )


def count_pipelines(bus: RedisBus, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record each pipeline the bus opens (one per flushed batch)."""
    opened: list[int] = []
    real: Callable[..., Any] = bus._redis.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        opened.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(bus._redis, "pipeline", pipeline)
    return opened


async def test_concurrent_publishes_share_one_pipeline_and_keep_their_order(
    redis: Redis, channel: str, reader: Received, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = RedisBus(redis, channel)
    pipelines = count_pipelines(bus, monkeypatch)
    tenants = [uuid.uuid4() for _ in range(3)]
    published: list[int] = []

    async def handler(seq: int) -> None:  # a webhook handler publishing after its commit
        published.append(seq)
        await bus.publish([event(tenants[seq % 3], seq)])

    await asyncio.gather(*(handler(seq) for seq in range(200)))
    received = await reader.wait_for(200)

    assert [e.seq for e in received] == published
    for tenant in tenants:
        mine = [e.seq for e in received if e.tenant_id == tenant]
        assert mine == [seq for seq in published if seq % 3 == tenants.index(tenant)]
    assert len(pipelines) == 1
    sample = received[0]
    assert isinstance(sample.created_at, dt.datetime)
    assert sample.data["n"] == sample.seq
    await bus.stop()


async def test_events_published_while_a_batch_is_in_flight_follow_it_in_order(
    redis: Redis, channel: str, reader: Received
) -> None:
    bus = RedisBus(redis, channel)
    tenant = uuid.uuid4()
    for seq in range(50):
        await bus.publish([event(tenant, seq), event(tenant, 1000 + seq)])
        if seq % 7 == 0:
            await asyncio.sleep(0)  # let the flusher start a batch mid-way
    received = await reader.wait_for(100)

    expected = [s for seq in range(50) for s in (seq, 1000 + seq)]
    assert [e.seq for e in received] == expected
    await bus.stop()


async def test_a_failed_send_is_logged_and_later_publishes_still_go(
    redis: Redis,
    channel: str,
    reader: Received,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = RedisBus(redis, channel)
    real = bus._redis.pipeline
    failures = [ConnectionError("redis went away")]

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(bus._redis, "pipeline", pipeline)
    tenant = uuid.uuid4()
    with caplog.at_level(logging.ERROR, logger="guiche.bus"):
        await bus.publish([event(tenant, 1), event(tenant, 2)])  # the batch that fails
        flusher = bus._flusher
        assert flusher is not None
        await flusher  # that batch's flush has run (and failed)
        await bus.publish([event(tenant, 3)])
        received = await reader.wait_for(1)

    assert [e.seq for e in received] == [3]
    failed = [r for r in caplog.records if r.getMessage() == "events not published"]
    assert len(failed) == 1
    assert failed[0].events == 2  # type: ignore[attr-defined]
    await bus.stop()


async def test_stop_sends_what_is_still_queued(
    redis: Redis, channel: str, reader: Received, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = RedisBus(redis, channel)  # publishing only: stop() has no reader to wait for
    tenant = uuid.uuid4()
    await bus.publish([event(tenant, seq) for seq in range(5)])
    await bus.stop()  # no yield in between: the flusher has not run yet

    def closed(*args: Any, **kwargs: Any) -> Any:  # what follows shutdown: no Redis
        raise ConnectionError("closed")

    monkeypatch.setattr(bus._redis, "pipeline", closed)
    received = await reader.wait_for(5)
    assert [e.seq for e in received] == [0, 1, 2, 3, 4]


async def test_queue_is_bounded_when_redis_does_not_keep_up(monkeypatch, caplog):
    """A hung Redis must not grow the process without bound: the oldest queued events go
    (logged), the newest stay queued for when it answers."""
    from guiche.realtime import bus as bus_module

    monkeypatch.setattr(bus_module, "MAX_PENDING", 3)
    bus = bus_module.RedisBus(redis=None, channel="unused")  # type: ignore[arg-type]
    bus._flusher = object()  # type: ignore[assignment]  # a flush "in flight": nothing sends
    events = [event(uuid.uuid4(), n) for n in range(5)]
    with caplog.at_level(logging.WARNING, logger="guiche.bus"):
        await bus.publish(events)
    assert len(bus._pending) == 3
    assert [orjson.loads(m)["seq"] for m in bus._pending] == [2, 3, 4]
    assert any(getattr(r, "events", None) == 2 for r in caplog.records)
