"""Fixtures for the ChatGuru plugin: a fake ChatGuru server, the real app, a company
that enabled the plugin and connected an account (a `chatguru` channel)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from guiche_chatguru.config import ALLOW_ANY_HOST_ENV

from guiche.models import Channel
from guiche.runtime.services import SERVICES
from tests.conftest import Company, login

from .fake_chatguru import ACCOUNT_ID, API_KEY, EMAIL, PASSWORD, PHONE_ID, FakeChatGuru

BASE = "/api/v1/plugins/chatguru"


@pytest.fixture
def allow_any_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ANY_HOST_ENV, "1")


@pytest.fixture
async def fake(aiohttp_server: Any, allow_any_host: None) -> FakeChatGuru:
    fake = FakeChatGuru.from_fixtures()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def client(make_client: Any, tmp_path: Any) -> Any:
    return await make_client(storage_path=str(tmp_path / "media"))


def credentials(fake: FakeChatGuru, **overrides: Any) -> dict[str, Any]:
    values = {
        "panel_url": fake.url,  # type: ignore[attr-defined]
        "email": EMAIL,
        "password": PASSWORD,
        "api_key": API_KEY,
        "account_id": ACCOUNT_ID,
        "phone_id": PHONE_ID,
    }
    values.update(overrides)
    return values


async def settle(client: Any) -> None:
    """Wait until no task (catalog job, hooks) is still running in-process."""
    services = client.server.app[SERVICES]
    broker = services.tasks.broker
    while services.background or broker._running_tasks:
        await services.wait_background()
        await broker.wait_all()


async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
    return await Channel.raw(sql, *args)


@dataclass
class Account:
    company: Company
    headers: dict[str, str]
    channel_id: uuid.UUID
    fake: FakeChatGuru

    @property
    def url(self) -> str:
        return f"{BASE}/accounts/{self.channel_id}"


async def enable(client: Any, headers: dict[str, str], **settings: Any) -> None:
    resp = await client.put(
        "/api/v1/plugins/chatguru", json={"enabled": True, "settings": settings}, headers=headers
    )
    assert resp.status == 200, await resp.text()


async def connect(client: Any, company: Company, fake: FakeChatGuru, **settings: Any) -> Account:
    headers = await login(client, company.owner)
    await enable(client, headers, **settings)
    resp = await client.post(
        "/api/v1/channels",
        json={"type": "chatguru", "name": "ChatGuru", "credentials": credentials(fake)},
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    return Account(company, headers, uuid.UUID((await resp.json())["id"]), fake)


@pytest.fixture
async def account(client: Any, make_company: Any, fake: FakeChatGuru) -> Any:
    connected = await connect(client, await make_company(), fake, poll_interval_seconds=2)
    yield connected
    # the database outlives the test and its fake server: no one polls this account again
    await fetch(
        "UPDATE chatguru_accounts SET polling_enabled = false WHERE id = {}", connected.channel_id
    )


async def catalog(client: Any, account: Account) -> dict[str, Any]:
    """Start the catalog through the API, wait for it, return the finished job."""
    resp = await client.post(f"{account.url}/catalog", headers=account.headers)
    assert resp.status == 202, await resp.text()
    await settle(client)
    resp = await client.get(f"{account.url}/catalog", headers=account.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def messages_of(channel_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT * FROM messages WHERE channel = {} ORDER BY created_at, id", channel_id
    )
