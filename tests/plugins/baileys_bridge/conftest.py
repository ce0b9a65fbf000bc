"""Fixtures for baileys_bridge: the bridge fixtures (copied from the shared set), a fake
sidecar on real TCP, the real app with the plugin enabled and a `baileys` channel, and
the bridge service running against the fake."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from guiche_baileys_bridge.bridge import Bridge
from guiche_baileys_bridge.config import OperatorSettings

from guiche.models import Channel
from guiche.runtime.services import SERVICES
from tests.conftest import FIXTURES_DIR, Company, login

from .fake_sidecar import SECRET, FakeSidecar

BRIDGE_DIR = Path(FIXTURES_DIR) / "bridge"
FIXTURE_SESSION = "5b0a6f9c-3f44-4c1e-8d2b-6f0e1a2b3c4d"


def load(name: str, session: str | None = None) -> dict[str, Any]:
    frame = orjson.loads((BRIDGE_DIR / name).read_bytes())
    if session is not None:
        frame["session"] = session
    return copy.deepcopy(frame)


async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
    return await Channel.raw(sql, *args)


async def settle(client: Any) -> None:
    services = client.server.app[SERVICES]
    broker = services.tasks.broker
    while services.background or broker._running_tasks:
        await services.wait_background()
        await broker.wait_all()


async def eventually(check: Any, seconds: float = 5.0) -> Any:
    """Poll an async `check` until it returns something truthy."""
    for _ in range(int(seconds / 0.02)):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError("condition never became true")


@pytest.fixture
async def client(make_client, tmp_path):
    return await make_client(
        storage_path=str(tmp_path / "media"),
        send_retry_base_seconds=0.0,
        send_retry_max_seconds=0.0,
    )


@pytest.fixture
async def fake_sidecar() -> AsyncIterator[FakeSidecar]:
    fake = await FakeSidecar().start()
    yield fake
    await fake.close()


def operator_settings(address: str, **overrides: Any) -> OperatorSettings:
    values: dict[str, Any] = {
        "GUICHE_BAILEYS_SIDECAR_ADDRESS": address,
        "GUICHE_BAILEYS_SIDECAR_SECRET": SECRET,
        "GUICHE_BAILEYS_POLL_SECONDS": 0.05,
        "GUICHE_BAILEYS_LEASE_SECONDS": 30,
    }
    values.update(overrides)
    return OperatorSettings.model_validate(values)


@dataclass
class Running:
    bridge: Bridge
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def halt(self) -> None:
        self.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def run_bridge(client) -> AsyncIterator[Any]:
    started: list[Running] = []

    def start(settings: OperatorSettings) -> Running:
        bridge = Bridge(client.server.app[SERVICES], settings)
        stop = asyncio.Event()
        running = Running(bridge, stop, asyncio.create_task(bridge.run(stop)))
        started.append(running)
        return running

    yield start
    for running in started:
        await running.halt()


@dataclass
class Setup:
    company: Company
    headers: dict[str, str]
    channel_id: uuid.UUID

    @property
    def session(self) -> str:
        return str(self.channel_id)


async def enable(client: Any, headers: dict[str, str]) -> None:
    resp = await client.put(
        "/api/v1/plugins/baileys_bridge", json={"enabled": True}, headers=headers
    )
    assert resp.status == 200, await resp.text()


async def create_channel(client: Any, headers: dict[str, str], **config: Any) -> uuid.UUID:
    resp = await client.post(
        "/api/v1/channels",
        json={"type": "baileys", "name": "Loja Centro", "credentials": config},
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    return uuid.UUID((await resp.json())["id"])


@pytest.fixture
async def setup(client, make_company) -> AsyncIterator[Setup]:
    company = await make_company()
    headers = await login(client, company.owner)
    await enable(client, headers)
    channel_id = await create_channel(client, headers, pace_ms=0, jitter_ms=0)
    yield Setup(company, headers, channel_id)
    # Leave no active Baileys channel behind: a worker that other tests start in this
    # database would run its bridge (and a sidecar) for it.
    await Channel.raw(
        "UPDATE channels SET is_active = false WHERE tenant = {} AND type = 'baileys'",
        company.tenant_id,
    )
