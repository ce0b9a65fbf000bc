"""Auto-assignment under real concurrency: 200 conversations arriving at once through
two app processes (the test's server and a subprocess) sharing one database.

Whatever the interleaving: no agent above their cap, one assignee per conversation
(one audit row and one `assigned` event each), and idle-longest spreads work evenly.
"""

from __future__ import annotations

import asyncio
import collections
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson
import pytest

from guiche.testing import FAKE_SIGNATURE_HEADER, fake_webhook_body, sign_fake

from ..conversations.conftest import fetch, text_message
from .helpers import add_agent, add_department, new_phone

WORKER = os.path.join(os.path.dirname(__file__), "_ingest_worker.py")
CONVERSATIONS = 200
AGENTS = 5


@pytest.fixture(scope="module")
def worker_log(tmp_path_factory: Any) -> Iterator[tuple[Path, IO[bytes]]]:
    path = tmp_path_factory.mktemp("second-app") / "stderr.log"
    with path.open("wb") as handle:
        yield path, handle


@pytest.fixture(scope="module")
async def second_app(
    database_url: str, encryption_key: str, worker_log: tuple[Path, IO[bytes]]
) -> AsyncIterator[str]:
    """Base URL of another process running the app on the same database."""
    settings = {
        "database_url": database_url,
        "redis_url": None,
        "secret_key": "test-secret-key-" + "x" * 32,
        "encryption_keys": [encryption_key],
        "rate_limit_per_minute": 0,
        "log_json": False,
        "log_level": "WARNING",
        "data_dir": "/tmp/guiche-test",
    }
    log_path, log = worker_log
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        WORKER,
        orjson.dumps(settings).decode(),
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line.startswith(b"READY "), f"second app did not start: {log_path.read_text()}"
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=30)


async def _scene(
    client: Any, second_app: str, make_company: Any, make_channel: Any, cap: int
) -> tuple[Any, list[Any], list[dict[str, Any]]]:
    """5 online agents of one department with `cap` each; 200 first messages, 100 per process."""
    company = await make_company()
    dept = await add_department(company.tenant_id)
    agents = [await add_agent(company, (dept,), max_chats=cap) for _ in range(AGENTS)]
    channel = await make_channel(company.tenant_id, department_id=dept)
    bodies = [
        fake_webhook_body([text_message(f"pedido {i}", phone=new_phone())])
        for i in range(CONVERSATIONS)
    ]
    bases = [str(client.make_url("")).rstrip("/"), second_app]

    async def post(session: aiohttp.ClientSession, i: int, body: bytes) -> int:
        headers = {FAKE_SIGNATURE_HEADER: sign_fake(body), "Content-Type": "application/json"}
        async with session.post(bases[i % 2] + channel.url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(*(post(session, i, b) for i, b in enumerate(bodies)))
    assert statuses == [200] * CONVERSATIONS
    conversations = await fetch(
        "SELECT id, status, assignee FROM conversations WHERE tenant = {}", company.tenant_id
    )
    assert len(conversations) == CONVERSATIONS
    return company, agents, conversations


async def _assert_one_assignment_each(company: Any, conversations: list[dict[str, Any]]) -> None:
    """Exactly one audit row and one `assigned` event per assigned conversation, naming the
    conversation's assignee; none for the ones still waiting."""
    assignee = {c["id"]: c["assignee"] for c in conversations}
    audits = await fetch(
        "SELECT target_id, data FROM audit_log WHERE tenant = {}"
        " AND action = 'conversation.auto_assigned'",
        company.tenant_id,
    )
    events = await fetch(
        "SELECT conversation, assignee, data FROM events WHERE tenant = {}"
        " AND type = 'conversation.updated' AND data->>'action' = 'assigned'",
        company.tenant_id,
    )
    assigned = {cid for cid, user in assignee.items() if user is not None}
    assert collections.Counter(a["target_id"] for a in audits) == dict.fromkeys(assigned, 1)
    assert collections.Counter(e["conversation"] for e in events) == dict.fromkeys(assigned, 1)
    for audit in audits:
        assert audit["data"]["assignee"] == str(assignee[audit["target_id"]])
    for event in events:
        assert event["assignee"] == assignee[event["conversation"]]
        assert event["data"]["assignee_id"] == str(assignee[event["conversation"]])


def _load(agents: list[Any], conversations: list[dict[str, Any]]) -> dict[Any, int]:
    counts = collections.Counter(c["assignee"] for c in conversations if c["assignee"])
    assert set(counts) <= {a.user_id for a in agents}
    return {a.user_id: counts.get(a.user_id, 0) for a in agents}


async def test_caps_filled_exactly_when_demand_matches_capacity(
    client, second_app, make_company, make_channel
):
    company, agents, conversations = await _scene(
        client, second_app, make_company, make_channel, cap=40
    )
    assert {c["status"] for c in conversations} == {"ACTIVE"}
    assert list(_load(agents, conversations).values()) == [40] * AGENTS
    await _assert_one_assignment_each(company, conversations)


async def test_overflow_waits_in_the_queue_without_breaking_caps(
    client, second_app, make_company, make_channel
):
    company, agents, conversations = await _scene(
        client, second_app, make_company, make_channel, cap=30
    )
    assert list(_load(agents, conversations).values()) == [30] * AGENTS
    waiting = [c for c in conversations if c["assignee"] is None]
    assert len(waiting) == 50
    assert {c["status"] for c in waiting} == {"PENDING"}
    await _assert_one_assignment_each(company, conversations)


async def test_idle_longest_spreads_evenly_when_caps_do_not_bind(
    client, second_app, make_company, make_channel
):
    company, agents, conversations = await _scene(
        client, second_app, make_company, make_channel, cap=60
    )
    loads = _load(agents, conversations)
    assert sum(loads.values()) == CONVERSATIONS
    assert all(39 <= n <= 41 for n in loads.values()), loads
    await _assert_one_assignment_each(company, conversations)
