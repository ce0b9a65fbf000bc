"""Plugin tasks on the broker: in-process without Redis, on a worker through the Redis stream.

The plugin below returns TaskSpecs like any installed plugin; core registers them as
`<plugin>.<name>`, kicks them, and a receiver (in-process or `run_worker`) runs them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from taskiq import InMemoryBroker
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend, RedisStreamBroker

from guiche.app import build_services
from guiche.foundation.config import ConfigError, Settings
from guiche.plugin import PluginInfo, TaskSpec, hookimpl
from guiche.runtime.services import SERVICES, Services
from guiche.tasks import broker as broker_module
from guiche.tasks.broker import make_broker, schedule_labels
from guiche.tasks.queue import TaskQueue, UnknownTask
from guiche.worker import run_scheduler, run_worker, schedule
from tests.conftest import drop_task_queue

WAIT = 20.0


class TaskPlugin:
    """An in-process plugin with an on-demand task and a periodic one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: asyncio.Queue[tuple[str, Any, Services | None]] = asyncio.Queue()

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, version="1.0")

    @hookimpl
    def guiche_tasks(self) -> list[TaskSpec]:
        return [
            TaskSpec("echo", self.echo),
            TaskSpec("tick", self.tick, schedule=({"interval": 1},)),
        ]

    async def echo(self, text: str, *, services: Services) -> str:
        await self.calls.put(("echo", text, services))
        return text.upper()

    async def tick(self) -> None:
        await self.calls.put(("tick", None, None))


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def redis_settings(
    require_redis: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[Settings]:
    """Settings on real Redis with a task stream of this test's own; its keys removed after."""
    queue = unique("guiche-test-tasks:")
    yield make_settings(redis_url=require_redis, task_queue=queue)
    await drop_task_queue(require_redis, queue)


def test_in_memory_broker_without_redis(make_settings: Callable[..., Settings]) -> None:
    assert isinstance(make_broker(make_settings()), InMemoryBroker)


def test_redis_means_the_acknowledging_stream_broker(
    require_redis: str, make_settings: Callable[..., Settings]
) -> None:
    broker = make_broker(make_settings(redis_url=require_redis, task_queue="q"))
    assert isinstance(broker, RedisStreamBroker)
    assert not isinstance(broker, ListQueueBroker)
    assert broker.queue_name == "q"
    assert broker.idle_timeout == broker_module.IDLE_TIMEOUT_MS
    assert isinstance(broker.result_backend, RedisAsyncResultBackend)


def test_schedule_labels_accept_one_or_many() -> None:
    async def noop() -> None:
        return None

    assert schedule_labels(TaskSpec("a", noop)) == []
    assert schedule_labels(TaskSpec("b", noop, schedule={"interval": 5})) == [{"interval": 5}]  # type: ignore[arg-type]
    assert schedule_labels(
        TaskSpec("c", noop, schedule=({"cron": "*/5 * * * *"}, {"interval": 60}))
    ) == [{"cron": "*/5 * * * *"}, {"interval": 60}]


async def test_plugin_task_runs_in_process(make_client: Any) -> None:
    plugin = TaskPlugin(unique("inproc"))
    client = await make_client(extra_plugins=((plugin.name, plugin),))
    services = client.server.app[SERVICES]
    queue = services.tasks
    assert queue is not None and queue.in_process
    assert f"{plugin.name}.echo" in queue.names

    task = await queue.kick(f"{plugin.name}.echo", "olá")
    result = await task.wait_result(timeout=WAIT)

    assert not result.is_err, result.error
    assert result.return_value == "OLÁ"
    kind, text, seen_services = await asyncio.wait_for(plugin.calls.get(), WAIT)
    assert (kind, text) == ("echo", "olá")
    assert seen_services is services


async def test_unknown_task_name_is_refused(make_client: Any) -> None:
    client = await make_client()
    queue = client.server.app[SERVICES].tasks
    with pytest.raises(UnknownTask):
        await queue.kick("nobody.nothing")


async def test_scheduler_kicks_periodic_task_in_process(make_client: Any) -> None:
    plugin = TaskPlugin(unique("periodic"))
    client = await make_client(extra_plugins=((plugin.name, plugin),))
    queue = client.server.app[SERVICES].tasks
    stop = asyncio.Event()
    loop = asyncio.create_task(schedule(queue.broker, stop))
    try:
        kind, _, _ = await asyncio.wait_for(plugin.calls.get(), WAIT)
    finally:
        stop.set()
        await asyncio.wait_for(loop, WAIT)
    assert kind == "tick"


async def test_worker_runs_task_from_redis_stream(redis_settings: Settings) -> None:
    plugin = TaskPlugin(unique("relay"))
    extra = ((plugin.name, plugin),)
    producer = TaskQueue.for_services(build_services(redis_settings, extra_plugins=extra))
    await producer.start()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(redis_settings, stop, extra_plugins=extra))
    try:
        task = await producer.kick(f"{plugin.name}.echo", "olá")
        result = await task.wait_result(timeout=WAIT)
        assert not result.is_err, result.error
        assert result.return_value == "OLÁ"
        kind, text, services = await asyncio.wait_for(plugin.calls.get(), WAIT)
        assert (kind, text) == ("echo", "olá")
        assert services is not None and services.tasks is not None  # the worker's own queue
    finally:
        stop.set()
        await asyncio.wait_for(worker, WAIT)
        await producer.stop()


async def test_task_of_a_dead_worker_is_redelivered(
    redis_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery nobody acknowledged goes to the next worker (the list broker would lose it)."""
    monkeypatch.setattr(broker_module, "IDLE_TIMEOUT_MS", 100)
    plugin = TaskPlugin(unique("redeliver"))
    extra = ((plugin.name, plugin),)
    producer = TaskQueue.for_services(build_services(redis_settings, extra_plugins=extra))
    await producer.start()
    try:
        task = await producer.kick(f"{plugin.name}.echo", "again")

        doomed = make_broker(redis_settings)  # takes the delivery, then dies without ack
        await doomed.startup()
        deliveries = doomed.listen()
        await asyncio.wait_for(anext(deliveries), WAIT)
        await deliveries.aclose()
        await doomed.shutdown()
        assert plugin.calls.empty()

        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(redis_settings, stop, extra_plugins=extra))
        try:
            result = await task.wait_result(timeout=WAIT)
            assert result.return_value == "AGAIN"
        finally:
            stop.set()
            await asyncio.wait_for(worker, WAIT)
    finally:
        await producer.stop()


async def test_scheduler_and_worker_over_redis(redis_settings: Settings) -> None:
    plugin = TaskPlugin(unique("scaleout"))
    extra = ((plugin.name, plugin),)
    stop = asyncio.Event()
    processes = [
        asyncio.create_task(run_worker(redis_settings, stop, extra_plugins=extra)),
        asyncio.create_task(run_scheduler(redis_settings, stop, extra_plugins=extra)),
    ]
    try:
        kind, _, _ = await asyncio.wait_for(plugin.calls.get(), WAIT)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*processes), WAIT)
    assert kind == "tick"


async def test_worker_and_scheduler_need_redis(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    with pytest.raises(ConfigError, match=r"^REDIS_URL: required for `guiche worker`"):
        await run_worker(settings, asyncio.Event())
    with pytest.raises(ConfigError, match=r"^REDIS_URL: required for `guiche scheduler`"):
        await run_scheduler(settings, asyncio.Event())


async def test_concurrent_acks_share_one_xack(redis_settings: Settings) -> None:
    """Deliveries finished together are acknowledged by one XACK, each ack returning only
    once it is done (nothing left pending for another worker to run again)."""
    plugin = TaskPlugin(unique("acks"))
    extra = ((plugin.name, plugin),)
    producer = TaskQueue.for_services(build_services(redis_settings, extra_plugins=extra))
    await producer.start()
    consumer = make_broker(redis_settings)
    await consumer.startup()
    try:
        for n in range(5):
            await producer.fire(f"{plugin.name}.echo", str(n))
        deliveries = consumer.listen()
        received = [await asyncio.wait_for(anext(deliveries), WAIT) for _ in range(5)]
        await deliveries.aclose()
        await asyncio.gather(*(delivery.ack() for delivery in received))
        async with Redis(connection_pool=consumer.connection_pool) as conn:
            pending = await conn.xpending(redis_settings.task_queue, broker_module.CONSUMER_GROUP)
        assert pending["pending"] == 0
        [acks] = consumer._acks.values()  # type: ignore[attr-defined]
        assert (acks.stats.flushes, acks.stats.items) == (1, 5)
    finally:
        await consumer.shutdown()
        await producer.stop()
