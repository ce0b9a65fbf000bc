"""Campaigns on the real app: a company with the fake channel and the plugin enabled.

The fake channel (`guiche.testing.FakeChannelPlugin`) is the outside world: what it
`sent` is what reached the provider. `window_24h` makes it behave like `meta_cloud`
(free text only inside the customer-care window), without it like `evolution`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from guiche.runtime.services import SERVICES, Services
from guiche.testing import FakeChannelPlugin
from tests.conftest import Company, login
from tests.core.conversations.conftest import (  # noqa: F401 - fixtures, used by name
    FakeChannel,
    fetch,
    make_channel,
    post_webhook,
    text_message,
)

BASE = "/api/v1/plugins/campaigns"
FAST = {
    "send_retry_base_seconds": 0.0,
    "send_retry_max_seconds": 0.0,
    "outbox_sweep_grace_seconds": 0.0,
}


@pytest.fixture
def fake_plugin(request: pytest.FixtureRequest) -> FakeChannelPlugin:
    return FakeChannelPlugin(**getattr(request, "param", {}))


@pytest.fixture
async def client(make_client: Any, fake_plugin: FakeChannelPlugin, tmp_path: Path) -> Any:
    overrides = {**FAST, "storage_path": str(tmp_path / "media")}
    return await make_client(extra_plugins=((fake_plugin.name, fake_plugin),), **overrides)


def services_of_client(client: Any) -> Services:
    return client.server.app[SERVICES]


async def settle(client: Any) -> None:
    """Wait until no kicked task (drivers, sends) or hook is still running in-process."""
    services = services_of_client(client)
    broker = services.tasks.broker
    while services.background or broker._running_tasks:
        await services.wait_background()
        await broker.wait_all()


@dataclass
class Shop:
    company: Company
    channel: FakeChannel
    headers: dict[str, str]

    async def create(self, client: Any, **body: Any) -> dict[str, Any]:
        body.setdefault("name", "Black Friday")
        body.setdefault("channel_id", str(self.channel.id))
        body.setdefault("content", {"type": "text", "text": "Olá {{first_name}}! {{cupom}}"})
        body.setdefault("rate_per_minute", 6000)
        body.setdefault("jitter", 0)
        resp = await client.post(f"{BASE}/campaigns", json=body, headers=self.headers)
        assert resp.status == 201, await resp.text()
        return await resp.json()

    async def csv(self, client: Any, campaign_id: str, text: str) -> dict[str, Any]:
        resp = await client.post(
            f"{BASE}/campaigns/{campaign_id}/targets/import",
            data=text.encode(),
            headers={**self.headers, "Content-Type": "text/csv"},
        )
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def act(self, client: Any, campaign_id: str, action: str, status: int = 200) -> Any:
        resp = await client.post(f"{BASE}/campaigns/{campaign_id}/{action}", headers=self.headers)
        assert resp.status == status, await resp.text()
        return await resp.json()

    async def get(self, client: Any, path: str, status: int = 200) -> Any:
        resp = await client.get(f"{BASE}/{path}", headers=self.headers)
        assert resp.status == status, await resp.text()
        return await resp.json() if resp.content_type == "application/json" else await resp.text()


MakeShop = Callable[..., Awaitable[Shop]]


@pytest.fixture
def make_shop(client: Any, make_company: Any, make_channel: Any) -> MakeShop:  # noqa: F811
    async def make(company: Company | None = None, **settings: Any) -> Shop:
        company = company or await make_company()
        channel = await make_channel(company.tenant_id)
        headers = await login(client, company.owner)
        resp = await client.put(
            "/api/v1/plugins/campaigns",
            json={"enabled": True, "settings": {"channel_rate_per_minute": 60_000.0, **settings}},
            headers=headers,
        )
        assert resp.status == 200, await resp.text()
        return Shop(company, channel, headers)

    return make


def csv_of(count: int, start: int = 0) -> str:
    lines = ["telefone,nome,cupom"]
    lines += [f"(11) 9{1000_0000 + i:08d},Cliente {i} Silva,CUPOM{i}" for i in range(start, count)]
    return "\n".join(lines) + "\n"


async def ledger_rows(campaign_id: Any) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT * FROM campaign_targets WHERE campaign = {} ORDER BY run, seq",
        uuid.UUID(str(campaign_id)),
    )
