"""kill -9 a real worker mid-campaign: the campaign finishes and nobody gets two messages.

`campaign_worker.py` is a real `guiche worker` (Redis stream broker, its own pool) that
drives the campaign and sends through core's outbox; its fake provider records each
accepted send on a Redis list. The test SIGKILLs it mid-run, wherever it is (between a
claim and its settle, inside core's send, ...), moves the leases' expiry instead of
waiting for it, and lets a live worker in this process recover: the scheduler's passes
re-drive the campaign (its tick) and re-kick a message whose kick died with the worker
(the outbox sweep), the broker redelivers the dead worker's tasks. Every target ends
with exactly one message; no phone reached the provider twice.
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
from guiche_campaigns import engine
from redis.asyncio import Redis

from guiche.outbound.sweeper import sweep_outbox
from guiche.tasks import broker as broker_module
from guiche.worker import run_worker
from tests.conftest import drop_task_queue

from .conftest import FAST, csv_of, fetch, ledger_rows, services_of_client

pytestmark = pytest.mark.redis
WORKER = Path(__file__).with_name("campaign_worker.py")
WORKER_START = 180.0
TARGETS = 40


@pytest.fixture
async def redis_queue(require_redis: str) -> AsyncIterator[str]:
    queue = f"guiche-test-campaigns:{uuid.uuid4().hex[:8]}"
    yield queue
    await drop_task_queue(require_redis, queue)


@pytest.fixture
async def client(make_client, fake_plugin, tmp_path, require_redis, redis_queue) -> Any:
    """The app enqueues on this test's Redis stream; no worker runs inside it."""
    return await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin),),
        **FAST,
        storage_path=str(tmp_path / "media"),
        redis_url=require_redis,
        task_queue=redis_queue,
    )


async def test_a_worker_killed_mid_campaign_leaves_every_target_sent_once(
    client, make_shop, fake_plugin, require_redis, redis_queue, database_url, encryption_key,
    tmp_path, monkeypatch,
):  # fmt: skip
    services = services_of_client(client)
    shop = await make_shop()
    campaign = await shop.create(client, rate_per_minute=1200)  # one every 0.05 s
    await shop.csv(client, campaign["id"], csv_of(TARGETS))
    sent_key = f"{redis_queue}:sent"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": require_redis,
        "GUICHE_TASK_QUEUE": redis_queue,
        "GUICHE_ENCRYPTION_KEYS": encryption_key,
        "GUICHE_DATA_DIR": str(tmp_path),
        "GUICHE_LOG_JSON": "false",
        "GUICHE_OUTBOX_SWEEP_GRACE_SECONDS": "0",
        "CAMPAIGN_WORKER_SENT": sent_key,
    }
    log_path = tmp_path / "campaign-worker.log"
    redis = Redis.from_url(require_redis)
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), env=env, stdout=log_file, stderr=log_file
        )
    try:
        await shop.act(client, campaign["id"], "start")
        async with asyncio.timeout(WORKER_START):
            while True:
                if await redis.llen(sent_key) >= 10:
                    break
                await asyncio.sleep(0.05)
        proc.kill()  # SIGKILL, mid-run
        await proc.wait()
        before = [p.decode() for p in await redis.lrange(sent_key, 0, -1)]
        assert 10 <= len(before) < TARGETS, log_path.read_text()

        # The dead worker's leases end (moved, not waited for).
        cid = uuid.UUID(campaign["id"])
        await fetch(
            "UPDATE campaigns SET driver_until = now() - interval '1 second' WHERE id = {}", cid
        )
        await fetch(
            "UPDATE campaign_targets SET lease_until = now() - interval '1 second'"
            " WHERE campaign = {} AND state = 'sending'",
            cid,
        )
        await fetch(
            "UPDATE message_outbox o SET locked_until = now() - interval '1 second'"
            " FROM campaign_targets t WHERE t.message_id = o.message_id AND t.campaign = {}",
            cid,
        )

        monkeypatch.setattr(broker_module, "IDLE_TIMEOUT_MS", 100)
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(services.settings, stop, extra_plugins=((fake_plugin.name, fake_plugin),))
        )
        try:
            async with asyncio.timeout(60):
                while True:  # the scheduler's passes: campaigns, and lost kicks
                    await engine.tick(services=services)
                    await sweep_outbox(services=services)
                    body = await shop.get(client, f"campaigns/{campaign['id']}")
                    outbox = await fetch(  # this campaign's sends only: others share the db
                        "SELECT count(*) AS n FROM message_outbox o JOIN campaign_targets t"
                        " ON t.message_id = o.message_id WHERE t.campaign = {}",
                        cid,
                    )
                    if body["status"] == "finished" and outbox[0]["n"] == 0:
                        break
                    await asyncio.sleep(0.3)
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await redis.aclose()

    after = [m.to.phone for m in fake_plugin.provider.sent]
    provider = before + after
    assert len(provider) == len(set(provider)), "a phone reached the provider twice"
    rows = await ledger_rows(campaign["id"])
    assert len(rows) == TARGETS
    assert all(r["message_id"] is not None for r in rows)
    assert len({r["message_id"] for r in rows}) == TARGETS  # one message per target
    messages = await fetch(
        "SELECT status, count(*) AS n FROM messages WHERE id = ANY({}) GROUP BY status",
        [r["message_id"] for r in rows],
    )
    by_status = {m["status"]: m["n"] for m in messages}
    # a send cut off inside the provider call is `unknown` (never repeated), all else sent
    assert set(by_status) <= {"sent", "unknown"} and sum(by_status.values()) == TARGETS
    states = {r["phone"]: r["state"] for r in rows}
    assert {p for p, s in states.items() if s == "sent"} <= set(provider)
    assert set(provider) <= set(states)


async def test_two_worker_processes_and_repeated_kicks_send_each_target_once(
    client, make_shop, require_redis, redis_queue, database_url, encryption_key, tmp_path
):
    """Two real workers consume one stream while the drive task is kicked again and again
    (a scheduler tick racing the self re-kicks): the driver lease and the row claims
    leave one message per target."""
    services = services_of_client(client)
    shop = await make_shop()
    campaign = await shop.create(client, rate_per_minute=3000)
    await shop.csv(client, campaign["id"], csv_of(TARGETS))
    sent_key = f"{redis_queue}:sent"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": require_redis,
        "GUICHE_TASK_QUEUE": redis_queue,
        "GUICHE_ENCRYPTION_KEYS": encryption_key,
        "GUICHE_DATA_DIR": str(tmp_path),
        "GUICHE_LOG_JSON": "false",
        "CAMPAIGN_WORKER_SENT": sent_key,
    }
    redis = Redis.from_url(require_redis)
    procs = []
    for n in range(2):
        with (tmp_path / f"worker-{n}.log").open("wb") as log_file:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, str(WORKER), env=env, stdout=log_file, stderr=log_file
                )
            )
    try:
        await shop.act(client, campaign["id"], "start")
        async with asyncio.timeout(WORKER_START):
            while True:
                for _ in range(3):  # extra drivers: each must find the lease held
                    await engine.kick(services, uuid.UUID(campaign["id"]))
                body = await shop.get(client, f"campaigns/{campaign['id']}")
                if body["status"] == "finished" and body["counts"]["queued"] == 0:
                    break
                await asyncio.sleep(0.2)
        phones = [p.decode() for p in await redis.lrange(sent_key, 0, -1)]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            await proc.wait()
        await redis.aclose()
    logs = "".join((tmp_path / f"worker-{n}.log").read_text() for n in range(2))
    assert len(phones) == TARGETS, logs
    assert len(set(phones)) == TARGETS
    rows = await ledger_rows(campaign["id"])
    assert {r["state"] for r in rows} == {"sent"}
    assert len({r["message_id"] for r in rows}) == TARGETS
