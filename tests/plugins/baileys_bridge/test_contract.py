"""The strict channel contract suite against the `baileys` adapter: its webhook face
(bridge frames pushed to core's per-channel route, checked with the channel's secret)
and its sends through a fake sidecar on real TCP (in its own thread and loop, as the
suite runs each adapter call on a private loop)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from guiche_baileys_bridge.adapter import SECRET_HEADER, BaileysAdapter
from guiche_baileys_bridge.config import BaileysConfig

from guiche.channels import ChannelInfo, OutboundMessage, Recipient, WebhookRequest
from guiche.testing import ChannelContract

from .conftest import load
from .fake_sidecar import SECRET, FakeSidecar

WEBHOOK_SECRET = "contract-webhook-secret-0123456789"
FAILURES = {
    "rate_limited": {"code": "rate_limited", "message": "slow down", "retryable": True},
    "server_error": {"code": "internal", "message": "boom", "retryable": True},
    "unauthorized": {"code": "logged_out", "message": "not linked", "retryable": False},
    "forbidden": {"code": "forbidden", "message": "banned", "retryable": False},
}


@pytest.fixture(scope="module")
def sidecar() -> Iterator[FakeSidecar]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = asyncio.run_coroutine_threadsafe(FakeSidecar().start(), loop).result(5)
    yield fake
    asyncio.run_coroutine_threadsafe(fake.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


class ContractAdapter(BaileysAdapter):
    address: tuple[str, int] = ("127.0.0.1", 0)

    async def sidecar(self) -> tuple[str, int, str]:  # no lease table in the suite's loops
        return (*self.address, SECRET)


def webhook(*frames: dict[str, Any], secret: str = WEBHOOK_SECRET) -> WebhookRequest:
    body = orjson.dumps({"frames": list(frames)}) if len(frames) > 1 else orjson.dumps(frames[0])
    return WebhookRequest(
        method="POST",
        path="/webhooks/baileys/x",
        headers={"Content-Type": "application/json", SECRET_HEADER: secret},
        query={},
        body=body,
    )


class TestBaileysContract(ChannelContract):
    """`same_native_id_in_two_chats` is left out: WhatsApp key ids are random per
    message, not numbered per chat, so they need no chat qualifier."""

    @pytest.fixture
    def edited_message(self) -> list[WebhookRequest]:
        original = load("bridge_message_text.json")
        edit = load("bridge_message_text.json")
        edit["data"]["message"]["key"]["id"] = "3A4D0BC3C466A3E715FF"
        edit["data"]["message"]["message"] = {
            "protocolMessage": {
                "key": original["data"]["message"]["key"],
                "type": 14,
                "editedMessage": {"conversation": "Vocês abrem no domingo?"},
            }
        }
        return [webhook(original), webhook(edit)]

    @pytest.fixture
    def adapter(self, sidecar: FakeSidecar) -> BaileysAdapter:
        info = ChannelInfo(
            id=uuid.uuid4(),
            tenant_id=uuid.uuid4(),
            type="baileys",
            name="Loja",
            webhook_secret=WEBHOOK_SECRET,
        )
        adapter = ContractAdapter(info, BaileysConfig())
        host, port = sidecar.address.rsplit(":", 1)
        adapter.address = (host, int(port))
        return adapter

    @pytest.fixture
    def valid_webhooks(self) -> list[WebhookRequest]:
        return [
            webhook(load("bridge_message_text.json")),
            webhook(load("bridge_message_image.json"), load("bridge_ack.json")),
            webhook(load("bridge_connection_open.json")),
            webhook(load("bridge_qr.json")),
        ]

    @pytest.fixture
    def webhook_secrets(self) -> list[tuple[str, str]]:
        return [("header", SECRET_HEADER)]

    @pytest.fixture
    def outbound_text(self) -> OutboundMessage:
        return OutboundMessage(
            message_id=uuid.uuid4(),
            to=Recipient(phone="+5511987654321"),
            kind="text",
            text="Abrimos sim",
        )

    @pytest.fixture
    def provider_fails(self, sidecar: FakeSidecar) -> Any:
        def fail(scenario: str) -> None:
            sidecar.send_errors.append(FAILURES[scenario])

        return fail

    @pytest.fixture
    def status_progression(self) -> list[WebhookRequest]:
        acks = []
        for status, code, at in (("SERVER_ACK", 2, 1), ("DELIVERY_ACK", 3, 2), ("READ", 4, 3)):
            frame = load("bridge_ack.json")
            frame["data"].update(status=status, status_code=code, timestamp=1741961300 + at)
            acks.append(webhook(frame))
        return acks
