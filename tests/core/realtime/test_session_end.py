"""Sockets follow their session: an ended session closes them (4401), and an agent whose
last socket closed is set offline, in this process or another."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from guiche.models import Membership
from guiche.routing.presence import MemoryLeases, RedisLeases
from guiche.websocket.ws import PRESENCE
from tests.conftest import login

from .conftest import connect, set_online


@pytest.fixture
async def client(make_client: Any, fake_plugin: Any) -> Any:
    """No grace after the last socket: the offline check runs as soon as it closes."""
    return await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin),), presence_grace_seconds=0
    )


async def _status(member: Any) -> str:
    row = (
        await Membership.select(Membership.status)
        .where((Membership.tenant == member.tenant_id) & (Membership.user == member.user_id))
        .first()
    )
    return row["status"]


async def _eventually(check: Any, expected: Any) -> Any:
    for _ in range(100):
        value = await check()
        if value == expected:
            return value
        await asyncio.sleep(0.05)
    return await check()


async def test_deactivation_closes_the_person_s_sockets(client, make_company):
    company = await make_company()
    agent = await company.add("agent")
    socket = await connect(client, agent)

    resp = await client.post(
        f"/api/v1/users/{agent.user_id}/deactivate", headers=await login(client, company.owner)
    )
    assert resp.status == 200

    assert await socket.close_code() == 4401


async def test_log_out_everywhere_closes_sockets_but_not_other_people_s(client, make_company):
    company = await make_company()
    agent = await company.add("agent")
    colleague = await company.add("agent")
    mine, theirs = await connect(client, agent), await connect(client, colleague)

    resp = await client.post("/api/v1/auth/logout-all", headers=await login(client, agent))
    assert resp.status == 204

    assert await mine.close_code() == 4401
    assert (await theirs.command("ping"))["type"] == "pong"


async def test_a_role_change_closes_the_socket_for_a_fresh_token(client, make_company):
    company = await make_company()
    supervisor = await company.add("supervisor")
    socket = await connect(client, supervisor)

    await client.patch(
        f"/api/v1/users/{supervisor.user_id}",
        json={"role": "agent"},
        headers=await login(client, company.owner),
    )

    assert await socket.close_code() == 4401
    fresh = await connect(client, supervisor)
    assert fresh.ready["role"] == "agent"


async def test_presence_drops_when_the_last_socket_closes(client, make_company):
    company = await make_company()
    agent = await company.add("agent")
    watcher = await connect(client, company.owner)
    first, second = await connect(client, agent), await connect(client, agent)
    assert (await first.command("presence", status="online"))["ok"] is True
    await watcher.next("operator.status", user_id=agent.user_id, status="online")

    await first.ws.close()
    await second.command("ping")  # the first socket's close has been handled meanwhile
    assert await _status(agent) == "online"  # one socket is still open

    await second.ws.close()
    frame = await watcher.next("operator.status", user_id=agent.user_id, status="offline")
    assert frame["data"]["previous_status"] == "online"
    assert await _status(agent) == "offline"


async def test_presence_set_without_a_socket_is_left_alone(client, make_company):
    """An agent put online by a supervisor or an API client had no socket to lose."""
    company = await make_company()
    agent = await company.add("agent")
    await set_online(agent)
    owner_socket = await connect(client, company.owner)

    await owner_socket.ws.close()
    await asyncio.sleep(0.2)

    assert await _status(agent) == "online"


async def test_a_reload_within_the_grace_period_keeps_the_agent_online(
    make_client, fake_plugin, make_company
):
    http = await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin),), presence_grace_seconds=1.0
    )
    company = await make_company()
    agent = await company.add("agent")
    socket = await connect(http, agent)
    await socket.command("presence", status="online")

    await socket.ws.close()
    reloaded = await connect(http, agent)
    await asyncio.sleep(1.3)

    assert await _status(agent) == "online"
    await reloaded.ws.close()
    assert await _eventually(lambda: _status(agent), "offline") == "offline"


async def test_the_sweep_sets_offline_the_agents_of_a_dead_process(client, make_company):
    company = await make_company()
    agent = await company.add("agent")
    await set_online(agent)
    tracker = client.server.app[PRESENCE]
    # A process that died holding the agent's socket: its lease is never renewed.
    await tracker._store.hold([(agent.tenant_id, agent.user_id)], "dead", time.time() - 1)

    assert await tracker.sweep() == 1
    assert await _status(agent) == "offline"


async def test_memory_leases():
    leases = MemoryLeases()
    pair = (uuid.uuid4(), uuid.uuid4())
    await leases.hold([pair], "a", time.time() + 60)
    await leases.hold([pair], "b", time.time() + 60)

    assert await leases.release(pair, "a") is False  # b still holds it
    assert await leases.release(pair, "b") is True
    await leases.hold([pair], "c", time.time() - 1)
    assert await leases.sweep(time.time()) == [pair]
    assert await leases.sweep(time.time()) == []


async def test_redis_leases_are_shared_by_processes(require_redis):
    redis = Redis.from_url(require_redis)
    prefix = f"guiche:presence-test:{uuid.uuid4().hex}"
    one, two = RedisLeases(redis, prefix), RedisLeases(redis, prefix)
    pair, dead = (uuid.uuid4(), uuid.uuid4()), (uuid.uuid4(), uuid.uuid4())
    try:
        await one.hold([pair], "process-1", time.time() + 60)
        await two.hold([pair], "process-2", time.time() + 60)
        await two.hold([dead], "process-2", time.time() - 1)

        assert await one.release(pair, "process-1") is False  # process 2 holds a socket
        assert await one.sweep(time.time()) == [dead]
        assert await two.release(pair, "process-2") is True
    finally:
        keys = [key async for key in redis.scan_iter(f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
