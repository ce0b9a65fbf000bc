"""Fixtures for outbound sending: the conversations fixtures (fake channel plugin, signed
webhooks), an app tuned for fast retries, a started conversation, and waiting helpers.

Per-test knobs, through indirect parametrisation:
- `fake_plugin`: keyword arguments for `FakeChannelPlugin` (e.g. `{"window_24h": True}`);
- `client_overrides`: settings overrides for the app (e.g. `{"send_max_attempts": 3}`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from guiche.channels import InboundMessage, MessageType, OutboundMessage, Sender
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

CONTACT_PHONE = "+5511987654321"

FAST = {
    "send_retry_base_seconds": 0.0,  # retries are immediate: tests never sleep
    "send_retry_max_seconds": 0.0,
}


@pytest.fixture
def fake_plugin(request: pytest.FixtureRequest) -> FakeChannelPlugin:
    return FakeChannelPlugin(**getattr(request, "param", {}))


@pytest.fixture
def client_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


@pytest.fixture
async def client(
    make_client: Any,
    fake_plugin: FakeChannelPlugin,
    client_overrides: dict[str, Any],
    tmp_path: Path,
) -> Any:
    """The app with the fake channel installed, immediate retries, media under tmp_path."""
    overrides = {**FAST, "storage_path": str(tmp_path / "media"), **client_overrides}
    return await make_client(extra_plugins=((fake_plugin.name, fake_plugin),), **overrides)


def services_of_client(client: Any) -> Services:
    return client.server.app[SERVICES]


async def settle(client: Any) -> None:
    """Wait until no send task, retry kick or plugin hook is still running in-process."""
    services = services_of_client(client)
    broker = services.tasks.broker  # the InMemoryBroker: kicks run as tasks in this loop
    while services.background or broker._running_tasks:
        await services.wait_background()
        await broker.wait_all()


@dataclass
class Chat:
    """A company with a fake channel and one open conversation started by the customer."""

    company: Company
    channel: FakeChannel
    conversation_id: uuid.UUID
    headers: dict[str, str]
    inbound_provider_id: str

    @property
    def url(self) -> str:
        return f"/api/v1/conversations/{self.conversation_id}/messages"


StartChat = Callable[..., Awaitable[Chat]]


@pytest.fixture
def start_chat(
    client: Any,
    make_company: Any,
    make_channel: Any,  # noqa: F811 - the imported fixture, requested by name
    post_webhook: Any,  # noqa: F811
) -> StartChat:
    async def start(
        *,
        company: Company | None = None,
        department_id: uuid.UUID | None = None,
        inbound_at: dt.datetime | None = None,
    ) -> Chat:
        company = company or await make_company()
        channel = await make_channel(company.tenant_id, department_id=department_id)
        inbound = text_message("Oi, preciso de ajuda", at=inbound_at or dt.datetime.now(dt.UTC))
        resp = await post_webhook(channel, [inbound])
        assert resp.status == 200, await resp.text()
        rows = await fetch("SELECT id FROM conversations WHERE channel = {}", channel.id)
        headers = await login(client, company.owner)
        return Chat(company, channel, rows[0]["id"], headers, inbound.provider_message_id)

    return start


async def send_text(
    client: Any, chat: Chat, text: str = "Olá! Como posso ajudar?", **extra: Any
) -> Any:
    """POST a text message as the company's owner (or with the `headers` given)."""
    extra.setdefault("headers", chat.headers)
    return await client.post(chat.url, json={"type": "text", "text": text}, **extra)


def sent_ids(plugin: FakeChannelPlugin) -> list[str]:
    return [str(message.message_id) for message in plugin.provider.sent]


async def message_row(message_id: Any) -> dict[str, Any]:
    rows = await fetch("SELECT * FROM messages WHERE id = {}", uuid.UUID(str(message_id)))
    assert len(rows) == 1
    return rows[0]


def echo_of(message: OutboundMessage, provider_id: str) -> InboundMessage:
    """The provider's echo of our own send (`from_me`), as it arrives in a webhook."""
    return InboundMessage(
        provider_message_id=provider_id,
        sender=Sender(phone=CONTACT_PHONE.lstrip("+")),
        timestamp=dt.datetime.now(dt.UTC),
        type=MessageType.TEXT,
        text=message.text,
        from_me=True,
        raw={},
    )
