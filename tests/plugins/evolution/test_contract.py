"""The shared channel contract, run against the Evolution adapter with every fixture."""

from __future__ import annotations

import uuid

import httpx
import pytest
from guiche_evolution.adapter import SECRET_HEADER

from guiche.channels import OutboundMessage, Recipient, WebhookRequest
from guiche.testing import ChannelContract

from .conftest import load, webhook, webhook_fixtures

#: What the faked Evolution answers a send with, per contract scenario.
FAILURES = {
    "rate_limited": (429, {"Retry-After": "9"}, 9.0),
    "server_error": (502, {}, None),
    "unauthorized": (401, {}, None),
    "forbidden": (403, {}, None),
}


@pytest.fixture
def failures() -> list[tuple[int, dict[str, str]]]:
    return []


@pytest.fixture
def adapter(make_adapter, public_dns, failures):
    def answer(request: httpx.Request) -> httpx.Response:
        if failures:
            status, headers = failures.pop(0)
            return httpx.Response(status, json=load("error_401.json"), headers=headers)
        return httpx.Response(201, json=load("send_text_response.json"))

    return make_adapter(answer, reject_groups=False)


@pytest.fixture
def provider_fails(failures):
    def fail(scenario: str) -> float | None:
        status, headers, announced = FAILURES[scenario]
        failures.append((status, headers))
        return announced

    return fail


@pytest.fixture
def webhook_secrets() -> list[tuple[str, str]]:
    return [("header", SECRET_HEADER)]


@pytest.fixture
def status_progression() -> list[WebhookRequest]:
    names = ("server_ack", "delivery_ack", "read")
    return [webhook(load(f"webhook_messages_update_{name}.json")) for name in names]


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
