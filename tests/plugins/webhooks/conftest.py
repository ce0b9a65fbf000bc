"""The webhooks plugin's tests: the real app, and a real local receiver (an aiohttp
server on 127.0.0.1) that can answer 2xx, fail, ask to retry later, or be down."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from guiche.runtime.services import SERVICES, Services
from tests.conftest import Company, login


@pytest.fixture(autouse=True)
def _local_receivers_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Receivers here are on 127.0.0.1 over http: allowed by the operator's settings in
    tests only (production keeps both off)."""
    monkeypatch.setenv("GUICHE_WEBHOOKS_ALLOWED_NETWORKS", "127.0.0.1/32")
    monkeypatch.setenv("GUICHE_WEBHOOKS_ALLOW_HTTP", "1")


@dataclass
class Received:
    headers: Any  # case-insensitive, as received
    body: bytes

    @property
    def events(self) -> list[dict[str, Any]]:
        return orjson.loads(self.body)["events"]


@dataclass
class Receiver:
    """A receiver the test scripts: `answers` are consumed one per request (status,
    headers), then `default`; `hold` makes it wait before answering."""

    port: int
    received: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: int = 200
    hold: asyncio.Event | None = None
    got_request: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got_request.set()
        if self.hold is not None:
            await self.hold.wait()
        status, headers = self.answers.pop(0) if self.answers else (self.default, {})
        if 200 <= status < 300:
            self.received.append(Received(request.headers.copy(), body))
        return web.Response(status=status, headers=headers, text=f"answer {status}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def events(self) -> list[dict[str, Any]]:
        return [event for item in self.received for event in item.events]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def receiver() -> Any:
    server = Receiver(port=free_port())
    await server.start()
    yield server
    if server.hold is not None:
        server.hold.set()
    await server.stop()


@dataclass
class Setup:
    client: Any
    company: Company
    headers: dict[str, str]

    @property
    def services(self) -> Services:
        return self.client.app[SERVICES]

    async def subscribe(self, url: str, **fields: Any) -> dict[str, Any]:
        resp = await self.client.post(
            "/api/v1/plugins/webhooks/subscriptions", json={"url": url, **fields},
            headers=self.headers,
        )
        assert resp.status == 201, await resp.text()
        return await resp.json()

    async def publish(self, n: int, *, conversation: uuid.UUID | None = None,
                      type: str = "test.ping") -> list[int]:
        from guiche.plugin import publish_event

        seqs = []
        for i in range(n):
            event = await publish_event(
                self.services, self.company.tenant_id, type, {"n": i},
                conversation_id=conversation,
            )
            seqs.append(event.seq)
        return seqs

    async def subscription(self, sub_id: str) -> dict[str, Any]:
        resp = await self.client.get(
            f"/api/v1/plugins/webhooks/subscriptions/{sub_id}", headers=self.headers
        )
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def enable(client: Any, headers: dict[str, str], **settings: Any) -> None:
    resp = await client.put(
        "/api/v1/plugins/webhooks", json={"enabled": True, "settings": settings}, headers=headers
    )
    assert resp.status == 200, await resp.text()


@pytest.fixture
async def setup(client: Any, make_company: Any) -> Setup:
    company = await make_company()
    headers = await login(client, company.owner)
    await enable(client, headers)
    return Setup(client, company, headers)


def later(seconds: float, base: dt.datetime | None = None) -> dt.datetime:
    return (base or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=seconds)
