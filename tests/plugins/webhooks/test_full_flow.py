"""The whole path: a customer's messages arrive on a channel webhook, core records
`message.new`, the plugin's hook wakes a delivery pass (the task queue, no scheduler),
and the company's receiver gets them — filtered by channel."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from guiche.runtime.services import SERVICES
from guiche.testing import FAKE_SIGNATURE_HEADER, FakeChannelPlugin, fake_webhook_body, sign_fake
from tests.conftest import login
from tests.core.conversations.conftest import text_message
from tests.plugins.webhooks.conftest import Receiver, Setup, enable, free_port


@pytest.fixture
async def client(make_client: Any) -> Any:
    plugin = FakeChannelPlugin()
    return await make_client(extra_plugins=((plugin.name, plugin),))


async def wait_for(condition: Any, seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not delivered in time")


async def test_inbound_messages_reach_the_receiver_by_themselves(
    client: Any, make_company: Any, receiver: Receiver
) -> None:
    company = await make_company()
    headers = await login(client, company.owner)
    await enable(client, headers)
    resp = await client.put("/api/v1/plugins/fakechannel", json={"enabled": True}, headers=headers)
    assert resp.status == 200
    resp = await client.post(
        "/api/v1/channels",
        json={"type": "fake", "name": "Loja", "credentials": {"webhook_secret": "s3cret"}},
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    channel_id = (await resp.json())["id"]
    setup = Setup(client, company, headers)
    await setup.subscribe(receiver.url, event_types=["message.new"], channel_ids=[channel_id])
    elsewhere = Receiver(port=free_port())
    await elsewhere.start()
    try:
        await setup.subscribe(elsewhere.url, channel_ids=[str(uuid.uuid4())])
        texts = [f"pedido {i}" for i in range(3)]
        for text in texts:
            body = fake_webhook_body([text_message(text, phone="5511912345678")])
            resp = await client.post(
                f"/webhooks/fake/{channel_id}",
                data=body,
                headers={
                    FAKE_SIGNATURE_HEADER: sign_fake(body, "s3cret"),
                    "Content-Type": "application/json",
                },
            )
            assert resp.status == 200, await resp.text()
        await wait_for(lambda: len(receiver.events()) >= 3)
        events = receiver.events()
        assert [e["type"] for e in events] == ["message.new"] * 3
        assert [e["data"]["channel_id"] for e in events] == [channel_id] * 3
        assert all(text in str(e["data"]) for text, e in zip(texts, events, strict=True))
        assert len({e["conversation_id"] for e in events}) == 1
        await asyncio.sleep(0.5)
        assert elsewhere.received == []  # another channel's filter
    finally:
        await elsewhere.stop()
        await asyncio.gather(*client.app[SERVICES].background, return_exceptions=True)
