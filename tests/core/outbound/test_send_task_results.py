"""`core.send_message` stores no taskiq result: its kickers never read one.

The API, the sweeper and retries enqueue it with `TaskQueue.fire`; the task still runs and
its delivery is still acknowledged, but the result backend is left alone (a Redis `SET`
per send saved). `TaskQueue.kick` keeps storing results for callers that wait on them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from guiche.app import build_services
from guiche.foundation.config import Settings
from guiche.outbound.service import SEND_TASK
from guiche.plugin import PluginInfo, TaskSpec, hookimpl
from guiche.tasks import broker as broker_module
from guiche.tasks.queue import TaskQueue
from guiche.worker import run_worker
from tests.conftest import drop_task_queue

from .conftest import send_text, sent_ids, services_of_client, settle

WAIT = 20.0


class EchoPlugin:
    """One task that reports each run."""

    def __init__(self) -> None:
        self.name = f"results{uuid.uuid4().hex[:8]}"
        self.runs: asyncio.Queue[str] = asyncio.Queue()

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, version="1.0")

    @hookimpl
    def guiche_tasks(self) -> list[TaskSpec]:
        return [TaskSpec("echo", self.echo)]

    async def echo(self, text: str) -> str:
        await self.runs.put(text)
        return text.upper()


@pytest.fixture
async def redis_settings(
    require_redis: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[Settings]:
    """Settings with a task stream of this test's own; its keys removed afterwards."""
    queue = f"guiche-test-results:{uuid.uuid4().hex[:8]}"
    yield make_settings(redis_url=require_redis, task_queue=queue)
    await drop_task_queue(require_redis, queue)


async def _result_keys(redis: Redis, settings: Settings) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=f"{settings.task_queue}:result*")]


async def _unacknowledged(redis: Redis, settings: Settings) -> int:
    pending = await redis.xpending(settings.task_queue, broker_module.CONSUMER_GROUP)
    return int(pending["pending"])


async def test_fired_task_runs_and_is_acknowledged_without_a_stored_result(
    redis_settings: Settings,
) -> None:
    plugin = EchoPlugin()
    extra = ((plugin.name, plugin),)
    producer = TaskQueue.for_services(build_services(redis_settings, extra_plugins=extra))
    await producer.start()
    redis = Redis.from_url(redis_settings.redis_url)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(redis_settings, stop, extra_plugins=extra))
    try:
        await producer.fire(f"{plugin.name}.echo", "fired")
        assert await asyncio.wait_for(plugin.runs.get(), WAIT) == "fired"
        kicked = await producer.kick(f"{plugin.name}.echo", "kicked")
        assert (await kicked.wait_result(timeout=WAIT)).return_value == "KICKED"
        async with asyncio.timeout(WAIT):  # the acknowledgement follows the task
            while True:  # each round trip yields to the loop: no sleeping needed
                if not await _unacknowledged(redis, redis_settings):
                    break

        keys = await _result_keys(redis, redis_settings)
    finally:
        stop.set()
        await asyncio.wait_for(worker, WAIT)
        await producer.stop()
        await redis.aclose()

    kicked_key = f"{redis_settings.task_queue}:result:{kicked.task_id}"
    assert [key.decode() for key in keys] == [kicked_key]


async def test_the_apis_send_stores_no_result(client: Any, start_chat: Any, fake_plugin: Any):
    chat = await start_chat()
    backend = services_of_client(client).tasks.broker.result_backend
    before = dict(backend.results)  # the in-memory broker's backend

    created = await (await send_text(client, chat)).json()
    await settle(client)

    assert sent_ids(fake_plugin) == [created["id"]]
    assert dict(backend.results) == before


async def test_a_send_kicked_for_its_result_still_has_one(
    client: Any, start_chat: Any, fake_plugin: Any
):
    chat = await start_chat()
    created = await (await send_text(client, chat)).json()
    await settle(client)

    again = await services_of_client(client).tasks.kick(SEND_TASK, created["id"])

    assert (await again.wait_result(timeout=WAIT)).return_value == "skipped"
