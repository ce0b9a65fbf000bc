"""A real worker process killed in the middle of a send: recovered, and never sent twice.

The app here enqueues on a Redis task stream of this test's own. `hanging_worker.py`, a
real `guiche worker` process (Redis stream broker, its own database pool), takes the
task, claims the outbox row, enters the adapter's `send` (the provider call: it may
have been accepted), and is SIGKILLed there. A live worker then recovers the row: the
fake provider cannot be asked, so the message becomes `unknown`, with 0 further calls.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from guiche.outbound import outbox
from guiche.outbound.service import SEND_TASK
from guiche.realtime.events import BusEvent
from guiche.tasks import broker as broker_module
from guiche.worker import run_worker
from tests.conftest import drop_task_queue

from .conftest import fetch, message_row, send_text, sent_ids, services_of_client

WAIT = 30.0
WORKER_START = 180.0
"""A fresh interpreter importing everything is slow on a loaded CI machine."""
HANGING_WORKER = Path(__file__).with_name("hanging_worker.py")

pytestmark = pytest.mark.redis


@pytest.fixture
async def redis_queue(require_redis: str) -> AsyncIterator[str]:
    """A task stream of this test's own; its keys removed afterwards."""
    queue = f"guiche-test-outbox:{uuid.uuid4().hex[:8]}"
    yield queue
    await drop_task_queue(require_redis, queue)


@pytest.fixture
def client_overrides(require_redis: str, redis_queue: str) -> dict[str, Any]:
    """The app kicks sends onto the Redis stream; no worker runs inside it."""
    return {"redis_url": require_redis, "task_queue": redis_queue}


async def _start_hanging_worker(env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    with log_path.open("wb") as log_file:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(HANGING_WORKER), env=env, stdout=log_file, stderr=log_file
        )


async def test_worker_killed_mid_send_is_marked_unknown_not_sent_again(
    client: Any,
    start_chat: Any,
    fake_plugin: Any,
    require_redis: str,
    redis_queue: str,
    database_url: str,
    encryption_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = services_of_client(client)
    chat = await start_chat()
    marker = f"{redis_queue}:send-started"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": require_redis,
        "GUICHE_TASK_QUEUE": redis_queue,
        "GUICHE_ENCRYPTION_KEYS": encryption_key,
        "GUICHE_DATA_DIR": str(tmp_path),
        "GUICHE_LOG_JSON": "false",
        "HANGING_WORKER_MARKER": marker,
    }
    log_path = tmp_path / "hanging-worker.log"
    redis = Redis.from_url(require_redis)
    proc = await _start_hanging_worker(env, log_path)
    try:
        created = await (await send_text(client, chat, "Seu boleto vence amanhã")).json()
        message_id = uuid.UUID(created["id"])

        # 1. The worker process is inside adapter.send for this message: kill it there.
        started = None
        deadline = asyncio.get_running_loop().time() + WORKER_START
        while started is None and asyncio.get_running_loop().time() < deadline:
            try:  # short blocking reads: redis-py may time a long one out itself
                started = await redis.blpop([marker], timeout=5)
            except TimeoutError:
                continue
        assert started is not None, log_path.read_text()
        assert started[1].decode() == created["id"]
        proc.kill()
        await proc.wait()

        # 2. Nothing was settled; the row is leased by the dead worker.
        assert (await message_row(message_id))["status"] == "pending"
        [row] = await fetch(
            "SELECT attempts, locked_until > now() AS leased FROM message_outbox"
            " WHERE message_id = {}",
            message_id,
        )
        assert (row["attempts"], row["leased"]) == (1, True)
        assert message_id not in await outbox.due(0, 10_000)

        # 3. The lease ends (moved instead of waited for), and a live worker reclaims the
        #    dead one's unacknowledged delivery from the stream (idle timeout shortened).
        await fetch(
            "UPDATE message_outbox SET locked_until = now() - interval '1 second'"
            " WHERE message_id = {}",
            message_id,
        )
        status_event = asyncio.get_running_loop().create_future()

        def on_event(event: BusEvent) -> None:
            data = event.data
            if event.type == "message.status" and str(data.get("id")) == created["id"]:
                if not status_event.done():
                    status_event.set_result(data)

        unsubscribe = services.bus.subscribe(on_event)
        monkeypatch.setattr(broker_module, "IDLE_TIMEOUT_MS", 100)
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(services.settings, stop, extra_plugins=((fake_plugin.name, fake_plugin),))
        )
        try:
            status = await asyncio.wait_for(status_event, WAIT)
            assert (status["status"], status["attempts"]) == ("unknown", 2)
            assert status["error"]["code"] == "send_outcome_unknown"

            # 4. The only provider call was the dead worker's; a further redelivery
            #    sends nothing, no sweep would.
            assert sent_ids(fake_plugin) == []
            assert await redis.llen(marker) == 0
            again = await services.tasks.kick(SEND_TASK, created["id"])
            assert (await again.wait_result(timeout=WAIT)).return_value == "skipped"
            assert message_id not in await outbox.due(0, 10_000)
            assert sent_ids(fake_plugin) == []
        finally:
            unsubscribe()
            stop.set()
            await asyncio.wait_for(worker, WAIT)
        stored = await message_row(message_id)
        assert stored["status"] == "unknown" and stored["provider_message_id"] is None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await redis.aclose()
