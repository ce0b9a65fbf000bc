"""The shared channel contract, run against the Evolution adapter with every fixture."""

from __future__ import annotations

import uuid

import httpx
import pytest

from guiche.channels import OutboundMessage, Recipient, WebhookRequest
from guiche.testing import ChannelContract

from .conftest import load, webhook, webhook_fixtures


@pytest.fixture
def adapter(make_adapter, public_dns):
    return make_adapter(
        lambda request: httpx.Response(201, json=load("send_text_response.json")),
        reject_groups=False,
    )


@pytest.fixture
def valid_webhooks() -> list[WebhookRequest]:
    return [webhook(load(name)) for name in webhook_fixtures()]


@pytest.fixture
def forged_webhook() -> WebhookRequest:
    return webhook(load("webhook_messages_upsert_conversation.json"), secret="forged")


@pytest.fixture
def outbound_text() -> OutboundMessage:
    return OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone="+5511987654321"),
        kind="text",
        text="Olá, Ana! Seu pedido saiu para entrega.",
    )


class TestEvolutionContract(ChannelContract):
    pass
