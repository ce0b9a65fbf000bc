"""The issue's whole loop in one app, through real HTTP and a real WebSocket.

Customer writes (signed webhook) → conversation opened and auto-assigned → the agent's
socket hears it → the agent replies over REST → the provider gets the send → `sent` →
the provider reports `read` (status webhook) → the agent's socket hears that too.
"""

from __future__ import annotations

from typing import Any

import pytest

from guiche.testing import FakeChannelPlugin
from tests.conftest import login

from .conftest import Feed, customer_message, post_signed, read_receipt

HOP_TIMEOUT = 30.0
"""Per hop; a safety net for a loaded CI machine, never a wait."""


@pytest.fixture
async def client(make_client: Any, fake_plugin: FakeChannelPlugin) -> Any:
    """The app with the fake channel installed; sends run in-process (no Redis)."""
    return await make_client(extra_plugins=((fake_plugin.name, fake_plugin),))


async def test_full_loop_single_process(
    client: Any, fake_plugin: FakeChannelPlugin, make_desk: Any
) -> None:
    desk = await make_desk()
    headers = await login(client, desk.agent)
    token = headers["Authorization"].removeprefix("Bearer ")
    feed = await Feed.open(await client.ws_connect(f"/ws?token={token}"), HOP_TIMEOUT)

    # 1. The customer writes: stored, a conversation opened and given to the online agent.
    inbound = customer_message("Oi, meu pedido não chegou")
    ack = await post_signed(client, desk.channel.url, messages=[inbound])
    assert (ack["messages"], ack["duplicates"]) == (1, 0)
    new = await feed.next("message.new", provider_message_id=inbound.provider_message_id)
    conversation_id = new["conversation_id"]
    assert new["data"]["conversation_id"] == conversation_id
    assert (new["data"]["direction"], new["data"]["body"]) == ("in", "Oi, meu pedido não chegou")
    assert new["data"]["channel_id"] == str(desk.channel.id)
    assigned = await feed.next(
        "conversation.updated", conversation_id=conversation_id, action="assigned"
    )
    assert assigned["data"]["assignee_id"] == str(desk.agent.user_id)
    resp = await client.get(f"/api/v1/conversations/{conversation_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    conversation = await resp.json()
    assert conversation["status"] == "ACTIVE"
    assert conversation["assignee"]["id"] == str(desk.agent.user_id)
    assert conversation["department"]["id"] == str(desk.department_id)
    assert conversation["last_message"]["id"] == new["data"]["id"]

    # 2. The agent replies over REST: accepted as pending, echoed on the socket.
    resp = await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"type": "text", "text": "Olá! Vou verificar agora."},
        headers=headers,
    )
    assert resp.status == 202, await resp.text()
    reply = await resp.json()
    reply_id = reply["id"]
    assert (reply["conversation_id"], reply["status"]) == (conversation_id, "pending")
    echo = await feed.next("message.new", id=reply_id)
    assert echo["conversation_id"] == conversation_id
    assert (echo["data"]["direction"], echo["data"]["sender_id"]) == (
        "out",
        str(desk.agent.user_id),
    )

    # 3. The provider receives exactly that message; it becomes `sent`.
    [sent] = await fake_plugin.provider.wait_sent(1, within=HOP_TIMEOUT)
    assert str(sent.message_id) == reply_id
    assert (sent.kind, sent.text) == ("text", "Olá! Vou verificar agora.")
    assert sent.to.phone == f"+{inbound.sender.phone}"  # the contact, in E.164
    sent_status = await feed.next("message.status", id=reply_id, status="sent")
    assert sent_status["conversation_id"] == conversation_id
    provider_id = sent_status["data"]["provider_message_id"]
    assert provider_id

    # 4. The provider reports it read; the agent's socket hears it.
    ack = await post_signed(client, desk.channel.url, statuses=[read_receipt(provider_id)])
    assert (ack["statuses"], ack["ignored"]) == (1, 0)
    read = await feed.next("message.status", id=reply_id, status="read")
    assert read["conversation_id"] == conversation_id
    assert read["data"]["provider_message_id"] == provider_id

    resp = await client.get(f"/api/v1/conversations/{conversation_id}/messages", headers=headers)
    assert resp.status == 200, await resp.text()
    stored = {item["id"]: item for item in (await resp.json())["items"]}
    assert (stored[reply_id]["status"], stored[reply_id]["provider_message_id"]) == (
        "read",
        provider_id,
    )
    assert stored[new["data"]["id"]]["direction"] == "in"
    assert len(fake_plugin.provider.sent) == 1
    await feed.ws.close()
