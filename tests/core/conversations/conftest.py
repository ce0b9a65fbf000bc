"""Fixtures for the conversations engine: the fake channel plugin installed in the app,
a channel of that type for a company, and signed webhook posting."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from guiche.channels import InboundMessage, MessageType, Sender, StatusUpdate
from guiche.foundation.crypto import CredentialCipher
from guiche.models import Channel, TenantPlugin
from guiche.testing import FAKE_SIGNATURE_HEADER, FakeChannelPlugin, fake_webhook_body, sign_fake

BASE_TIME = dt.datetime(2025, 3, 14, 13, 15, tzinfo=dt.UTC)


@pytest.fixture
def fake_plugin() -> FakeChannelPlugin:
    return FakeChannelPlugin()


@pytest.fixture
async def client(make_client: Any, fake_plugin: FakeChannelPlugin) -> Any:
    """The app with the fake channel plugin installed (overrides the plain `client`)."""
    return await make_client(extra_plugins=((fake_plugin.name, fake_plugin),))


@dataclass
class FakeChannel:
    id: uuid.UUID
    tenant_id: uuid.UUID
    secret: str = "fake-secret"

    @property
    def url(self) -> str:
        return f"/webhooks/fake/{self.id}"


@pytest.fixture
def make_channel(settings: Any) -> Callable[..., Awaitable[FakeChannel]]:
    async def make(
        tenant_id: uuid.UUID, *, department_id: uuid.UUID | None = None, enable: bool = True
    ) -> FakeChannel:
        if enable:
            await TenantPlugin.raw(
                "INSERT INTO tenant_plugins (tenant, plugin, enabled) VALUES ({}, {}, true) "
                "ON CONFLICT (tenant, plugin) DO UPDATE SET enabled = true",
                tenant_id,
                "fakechannel",
            )
        cipher = CredentialCipher(settings.encryption_keys)
        channel = Channel(
            tenant=tenant_id,
            type="fake",
            name="Fake WhatsApp",
            credentials_encrypted=cipher.encrypt({"webhook_secret": "fake-secret"}),
            default_department=department_id,
        )
        await channel.save()
        return FakeChannel(channel.id, tenant_id)

    return make


def text_message(
    text: str = "Oi, meu pedido não chegou",
    *,
    phone: str | None = "5511987654321",
    user_id: str | None = None,
    name: str = "Ana Souza",
    provider_id: str | None = None,
    at: dt.datetime | None = None,
) -> InboundMessage:
    return InboundMessage(
        provider_message_id=provider_id or f"wamid.{uuid.uuid4().hex}",
        sender=Sender(phone=phone, provider_user_id=user_id, name=name),
        timestamp=at or BASE_TIME,
        type=MessageType.TEXT,
        text=text,
        raw={"text": {"body": text}},
    )


Post = Callable[..., Awaitable[Any]]


@pytest.fixture
def post_webhook(client: Any) -> Post:
    async def post(
        channel: FakeChannel,
        messages: Sequence[InboundMessage] = (),
        statuses: Sequence[StatusUpdate] = (),
        *,
        signature: str | None = None,
    ) -> Any:
        body = fake_webhook_body(messages, statuses)
        headers = {
            FAKE_SIGNATURE_HEADER: signature if signature is not None else sign_fake(body),
            "Content-Type": "application/json",
        }
        return await client.post(channel.url, data=body, headers=headers)

    return post


async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
    rows = await Channel.raw(sql, *args)
    return [
        {
            k: (orjson.loads(v) if k in ("payload", "error", "data") and isinstance(v, str) else v)
            for k, v in row.items()
        }
        for row in rows
    ]
