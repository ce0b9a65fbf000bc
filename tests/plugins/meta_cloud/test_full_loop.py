"""The whole loop through real HTTP: Meta's webhook → stored → an agent replies through
the API → the (fake) Graph API receives the send → status webhooks → the message is read.
Also the failure paths the outbound worker takes on Graph's answers."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.conftest import Company, login
from tests.core.conversations.conftest import fetch
from tests.plugins.meta_cloud.conftest import (
    FakeGraph,
    MakeChannel,
    fixture_bytes,
    now_ts,
    post_channel_webhook,
    rewrite,
    settle,
    with_timestamps,
)

INBOUND_WAMID = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDUwNTJGNjFENUIwOUZFQTA1Q0MxAA=="
STATUS_WAMID = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDlENjVBNUUxMEExQkJFODExMjI0AA=="


async def start_chat(
    client: Any, company: Company, make_meta_channel: MakeChannel, *, fresh: bool = True
) -> tuple[uuid.UUID, uuid.UUID, dict[str, str]]:
    """A channel and a conversation opened by webhook_text.json (timestamped now when
    `fresh`, so the 24 h window is open). Returns (channel, conversation, owner headers)."""
    channel_id = await make_meta_channel(company)
    body = fixture_bytes("webhook_text.json")
    if fresh:
        body = with_timestamps(body, now_ts())
    resp = await post_channel_webhook(client, channel_id, body)
    assert resp.status == 200, await resp.text()
    rows = await fetch("SELECT id FROM conversations WHERE channel = {}", channel_id)
    return channel_id, rows[0]["id"], await login(client, company.owner)


def status_body(name: str, wamid: str) -> bytes:
    return with_timestamps(rewrite(fixture_bytes(name), **{STATUS_WAMID: wamid}), now_ts())


async def message(message_id: Any) -> dict[str, Any]:
    rows = await fetch("SELECT * FROM messages WHERE id = {}", uuid.UUID(str(message_id)))
    return rows[0]


async def test_inbound_reply_status_read(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    company = await make_company()
    channel_id, conversation_id, headers = await start_chat(client, company, make_meta_channel)
    history = await client.get(f"/api/v1/conversations/{conversation_id}/messages", headers=headers)
    (inbound,) = (await history.json())["items"]
    assert inbound["provider_message_id"] == INBOUND_WAMID
    assert inbound["body"].startswith("Oi, boa tarde!")
    contact = await fetch(
        "SELECT phone, name FROM contacts WHERE id = {}", uuid.UUID(inbound["contact_id"])
    )
    assert contact[0] == {"phone": "+5511987654321", "name": "Ana Beatriz Souza"}

    resp = await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={
            "type": "text",
            "text": "Verificamos: chega amanhã.",
            "reply_to_message_id": inbound["id"],
        },
        headers=headers,
    )
    assert resp.status == 202, await resp.text()
    reply_id = (await resp.json())["id"]
    await settle(client)

    (sent,) = graph.sends()
    assert sent["to"] == "5511987654321"
    assert sent["context"] == {"message_id": INBOUND_WAMID}
    assert sent["text"]["body"] == "Verificamos: chega amanhã."
    assert sent["biz_opaque_callback_data"] == reply_id
    wamid = graph.sent_wamids[0]
    row = await message(reply_id)
    assert (row["status"], row["provider_message_id"]) == ("sent", wamid)

    # Meta reports sent (with pricing), delivered and read, in one POST and out of order.
    body = json.loads(status_body("webhook_status_delivered.json", wamid))
    statuses = body["entry"][0]["changes"][0]["value"]["statuses"]
    delivered = statuses[0]
    delivered["id"] = wamid
    read = json.loads(status_body("webhook_status_read.json", wamid))
    sent_status = json.loads(status_body("webhook_status_sent.json", wamid))
    read_s = read["entry"][0]["changes"][0]["value"]["statuses"][0]
    sent_s = sent_status["entry"][0]["changes"][0]["value"]["statuses"][0]
    sent_s["timestamp"] = str(int(delivered["timestamp"]) - 2)
    read_s["timestamp"] = str(int(delivered["timestamp"]) + 2)
    statuses[:] = [read_s, delivered, sent_s]
    payload = json.dumps(body).encode()
    resp = await post_channel_webhook(client, channel_id, payload)
    assert resp.status == 200, await resp.text()
    assert (await message(reply_id))["status"] == "read"

    usage = await fetch(
        "SELECT pricing_model, category, billable, cost, currency, details FROM provider_usage "
        "WHERE channel = {} AND provider_message_id = {}",
        channel_id,
        wamid,
    )
    assert len(usage) == 1  # Meta repeats pricing on sent and delivered: recorded once
    assert (usage[0]["pricing_model"], usage[0]["category"]) == ("PMP", "service")
    assert usage[0]["billable"] is False and float(usage[0]["cost"]) == 0.0

    replay = await post_channel_webhook(client, channel_id, payload)  # redelivered
    assert replay.status == 200
    again = await fetch(
        "SELECT count(*) AS n FROM provider_usage WHERE provider_message_id = {}", wamid
    )
    assert again[0]["n"] == 1
    count = await fetch("SELECT count(*) AS n FROM messages WHERE channel = {}", channel_id)
    assert count[0]["n"] == 2


async def test_failed_status_webhook_fails_the_message(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    company = await make_company()
    channel_id, conversation_id, headers = await start_chat(client, company, make_meta_channel)
    resp = await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"type": "text", "text": "Olá"},
        headers=headers,
    )
    reply_id = (await resp.json())["id"]
    await settle(client)
    failed_wamid = "wamid.HBgNNTU2MTk4MTIzNDU2NxUCABIYFEM0MjQ2M0UwNjVGRUUzQzNENDEyAA=="
    body = rewrite(
        fixture_bytes("webhook_status_failed.json"), **{failed_wamid: graph.sent_wamids[0]}
    )
    resp = await post_channel_webhook(client, channel_id, body)
    assert resp.status == 200
    row = await message(reply_id)
    assert row["status"] == "failed"
    assert row["error"]["code"] == "131047"


async def test_outside_the_window_only_templates_go(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    company = await make_company()
    _, conversation_id, headers = await start_chat(
        client,
        company,
        make_meta_channel,
        fresh=False,  # the customer wrote in March 2025
    )
    url = f"/api/v1/conversations/{conversation_id}/messages"
    resp = await client.post(url, json={"type": "text", "text": "Oi?"}, headers=headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "outside_customer_care_window"
    template = {
        "name": "pedido_confirmado",
        "language": "pt_BR",
        "components": [{"type": "body", "parameters": [{"type": "text", "value": "Ana"}]}],
    }
    resp = await client.post(url, json={"type": "template", "template": template}, headers=headers)
    assert resp.status == 202, await resp.text()
    await settle(client)
    (sent,) = graph.sends()
    assert sent["type"] == "template"
    assert sent["template"]["name"] == "pedido_confirmado"
    assert sent["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Ana"}]


async def test_expired_token_fails_and_marks_the_channel_unhealthy(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    company = await make_company()
    channel_id, conversation_id, headers = await start_chat(client, company, make_meta_channel)
    graph.fail_next(401, fixture_bytes("error_190.json"))
    resp = await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"type": "text", "text": "Olá"},
        headers=headers,
    )
    reply_id = (await resp.json())["id"]
    await settle(client)
    row = await message(reply_id)
    assert row["status"] == "failed"
    assert row["error"]["code"] == "190"
    channel = await fetch("SELECT state, state_detail FROM channels WHERE id = {}", channel_id)
    assert channel[0]["state"] == "unhealthy"
    assert "access_token" in channel[0]["state_detail"]


async def test_throttled_send_is_retried_then_sent(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    company = await make_company()
    _, conversation_id, headers = await start_chat(client, company, make_meta_channel)
    graph.fail_next(400, fixture_bytes("error_130429.json"), {"Retry-After": "0"})
    resp = await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"type": "text", "text": "Olá"},
        headers=headers,
    )
    reply_id = (await resp.json())["id"]
    await settle(client)
    assert len(graph.sends()) == 2  # the throttled attempt, then the retry
    row = await message(reply_id)
    assert (row["status"], row["provider_message_id"]) == ("sent", graph.sent_wamids[0])


async def test_permanent_graph_error_fails_with_the_reason(
    client: Any, graph: FakeGraph, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    company = await make_company()
    channel_id, conversation_id, headers = await start_chat(client, company, make_meta_channel)
    graph.fail_next(400, fixture_bytes("error_131026.json"))
    resp = await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"type": "text", "text": "Olá"},
        headers=headers,
    )
    reply_id = (await resp.json())["id"]
    await settle(client)
    row = await message(reply_id)
    assert row["status"] == "failed"
    assert row["error"]["code"] == "131026"
    assert "undeliverable" in row["error"]["message"]
    channel = await fetch("SELECT state FROM channels WHERE id = {}", channel_id)
    assert channel[0]["state"] != "unhealthy"
