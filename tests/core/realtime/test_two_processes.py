"""Scale-out: a webhook ingested by one web process reaches a socket on another, via Redis.

Process A is the in-test app (it has the fake channel plugin, so it can ingest);
process B is a real `guiche web` subprocess on the same database and Redis, holding
the WebSockets.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ..conversations.conftest import text_message
from .conftest import Socket, make_department, set_online, token_of

STARTUP_TIMEOUT = 60.0


@pytest.fixture
def task_queue() -> str:
    return f"guiche-test-tasks:{uuid.uuid4().hex}"


@pytest.fixture
async def client(make_client: Any, fake_plugin: Any, require_redis: str, task_queue: str) -> Any:
    """Process A: events go through Redis (overrides the in-memory `client`)."""
    return await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin),),
        redis_url=require_redis,
        task_queue=task_queue,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def process_b(
    database_url: str, require_redis: str, encryption_key: str, task_queue: str, settings: Any
) -> AsyncIterator[str]:
    """`python -m guiche.cli web` on a free port; yields its base URL once it listens."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": require_redis,
        "GUICHE_HOST": "127.0.0.1",
        "GUICHE_PORT": str(port),
        "GUICHE_SECRET_KEY": settings.secret_key.get_secret_value(),
        "GUICHE_ENCRYPTION_KEYS": encryption_key,
        "GUICHE_TASK_QUEUE": task_queue,
        "GUICHE_RATE_LIMIT_PER_MINUTE": "0",
        "GUICHE_LOG_JSON": "false",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "guiche.cli",
        "web",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output: list[bytes] = []
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while True:
                line = await proc.stdout.readline()
                output.append(line)
                if not line:
                    pytest.fail(f"guiche web exited early:\n{b''.join(output).decode()}")
                if b"listening on" in line:
                    break
        # keep the pipe drained so the child never blocks on its own logs
        drain = asyncio.create_task(_collect(proc.stdout, output))
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        if drain is not None:
            await drain


async def _collect(stream: asyncio.StreamReader, into: list[bytes]) -> None:
    while line := await stream.readline():
        into.append(line)


async def test_webhook_on_process_a_reaches_a_socket_on_process_b(
    client, process_b, make_company, make_channel, post_webhook
):
    company = await make_company()
    agent = await company.add("agent")
    stranger = await company.add("agent")
    support = await make_department(company.tenant_id, agent)
    await make_department(company.tenant_id, stranger)
    await set_online(agent)
    channel = await make_channel(company.tenant_id, department_id=support)

    async with aiohttp.ClientSession() as session:
        sockets = {}
        for name, member in (("agent", agent), ("stranger", stranger)):
            token = await token_of(client, member)  # minted by A, verified by B
            ws = await session.ws_connect(f"{process_b}/ws?token={token}")
            sockets[name] = Socket(ws)
            await sockets[name].next("ready")

        resp = await post_webhook(channel, [text_message("vim pelo outro processo")])
        assert resp.status == 200

        new = await sockets["agent"].next("message.new", body="vim pelo outro processo")
        assigned = await sockets["agent"].next("conversation.updated", action="assigned")
        assert new["conversation_id"] == assigned["conversation_id"]
        assert assigned["data"]["assignee_id"] == str(agent.user_id)
        # B fans each Redis message out to all its sockets before reading the next one,
        # so the stranger's queue already holds whatever it was going to get.
        assert not [f for f in await sockets["stranger"].drain() if "seq" in f]
        # B publishes too, and its own sockets hear it back through Redis.
        presence = await sockets["stranger"].command("presence", status="away")
        assert presence["ok"] is True
        status = await sockets["agent"].next("operator.status", status="away")
        assert status["data"]["user_id"] == str(stranger.user_id)
