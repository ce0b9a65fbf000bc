"""Sending through the real API and the in-process task: pending → sent → delivered → read,
retries, permanent failures, an unhealthy channel, replies, visibility and closed chats."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
import pytest

from guiche.channels import (
    DeliveryStatus,
    PermanentSendError,
    RetryableSendError,
    StatusUpdate,
)
from guiche.companies.enablement import plugins_changed
from guiche.models import Department, DepartmentMember
from guiche.outbound import outbox
from guiche.outbound.retry import backoff_delay
from guiche.outbound.sweeper import sweep_outbox
from guiche.runtime.services import SERVICES
from tests.conftest import login

from .conftest import (
    CONTACT_PHONE,
    fetch,
    message_row,
    send_text,
    sent_ids,
    services_of_client,
    settle,
)


async def _events(conversation_id: uuid.UUID, kind: str) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT * FROM events WHERE conversation = {} AND type = {} ORDER BY seq",
        conversation_id,
        kind,
    )


async def test_text_is_sent_then_status_webhooks_move_it_to_delivered_and_read(
    client, start_chat, fake_plugin, post_webhook
):
    chat = await start_chat()

    resp = await send_text(client, chat, "Seu pedido sai hoje")

    assert resp.status == 202, await resp.text()
    created = await resp.json()
    assert created["status"] == "pending"
    assert (created["direction"], created["type"], created["body"]) == (
        "out",
        "text",
        "Seu pedido sai hoje",
    )
    assert created["sender_id"] == str(chat.company.owner.user_id)
    await settle(client)

    [sent] = fake_plugin.provider.sent
    assert str(sent.message_id) == created["id"]
    assert (sent.kind, sent.text, sent.to.phone) == ("text", "Seu pedido sai hoje", CONTACT_PHONE)
    stored = await message_row(created["id"])
    assert stored["status"] == "sent"
    provider_id = stored["provider_message_id"]
    assert provider_id and provider_id.startswith("fake.")
    keys = await fetch(
        "SELECT message_id FROM message_keys WHERE channel = {} AND provider_message_id = {}",
        chat.channel.id,
        provider_id,
    )
    assert [k["message_id"] for k in keys] == [uuid.UUID(created["id"])]
    assert not await fetch("SELECT 1 FROM message_outbox WHERE message_id = {}", stored["id"])
    conversation = (await fetch("SELECT * FROM conversations WHERE id = {}", chat.conversation_id))[
        0
    ]
    assert conversation["first_agent_reply_at"] == stored["created_at"]
    assert conversation["last_message_at"] == stored["created_at"]

    now = dt.datetime.now(dt.UTC)
    for status in (DeliveryStatus.DELIVERED, DeliveryStatus.READ):
        update = StatusUpdate(provider_message_id=provider_id, status=status, timestamp=now)
        assert (await post_webhook(chat.channel, statuses=[update])).status == 200
        assert (await message_row(created["id"]))["status"] == status.value

    new = await _events(chat.conversation_id, "message.new")
    assert [e["data"]["direction"] for e in new] == ["in", "out"]
    statuses = [e["data"]["status"] for e in await _events(chat.conversation_id, "message.status")]
    assert statuses == ["sent", "delivered", "read"]


async def test_first_agent_reply_is_kept_from_the_first_send(client, start_chat):
    chat = await start_chat()
    first = await (await send_text(client, chat, "um")).json()
    await (await send_text(client, chat, "dois")).json()
    await settle(client)
    conversation = (await fetch("SELECT * FROM conversations WHERE id = {}", chat.conversation_id))[
        0
    ]
    assert conversation["first_agent_reply_at"] == dt.datetime.fromisoformat(first["created_at"])


async def test_retryable_errors_are_retried_until_sent(client, start_chat, fake_plugin):
    fake_plugin.provider.fail_next(
        RetryableSendError("throttled", code="429"), RetryableSendError("busy", code="503")
    )
    chat = await start_chat()

    created = await (await send_text(client, chat)).json()
    await settle(client)

    assert [str(m.message_id) for m in fake_plugin.provider.sent] == [created["id"]]
    assert (await message_row(created["id"]))["status"] == "sent"
    [event] = await _events(chat.conversation_id, "message.status")
    assert (event["data"]["status"], event["data"]["attempts"]) == ("sent", 3)


@pytest.mark.parametrize("client_overrides", [{"send_max_attempts": 3}], indirect=True)
async def test_retries_exhausted_fail_the_message(client, start_chat, fake_plugin):
    fake_plugin.provider.fail_next(*(RetryableSendError("down", code="503") for _ in range(3)))
    chat = await start_chat()

    created = await (await send_text(client, chat)).json()
    await settle(client)

    assert fake_plugin.provider.sent == []
    stored = await message_row(created["id"])
    assert stored["status"] == "failed"
    assert stored["error"]["code"] == "retries_exhausted"
    assert stored["error"]["details"]["attempts"] == 3
    assert stored["error"]["details"]["last_error"]["code"] == "503"
    assert not await fetch("SELECT 1 FROM message_outbox WHERE message_id = {}", stored["id"])


async def test_retry_after_is_honoured_and_the_sweeper_sends_when_due(
    client, start_chat, fake_plugin
):
    """The provider's retry_after (an hour here) beats the zero backoff; nothing is sent
    early. Moving the row's due time stands in for the hour passing."""
    fake_plugin.provider.fail_next(RetryableSendError("slow down", retry_after=3600))
    chat = await start_chat()

    created = await (await send_text(client, chat)).json()
    await settle(client)

    assert fake_plugin.provider.sent == []
    [row] = await fetch(
        "SELECT *, next_attempt_at - now() AS wait FROM message_outbox WHERE message_id = {}",
        uuid.UUID(created["id"]),
    )
    assert row["attempts"] == 1 and row["locked_until"] is None
    assert row["wait"] > dt.timedelta(minutes=59)
    assert orjson.loads(row["last_error"])["message"] == "slow down"
    services = services_of_client(client)
    assert row["message_id"] not in await outbox.due(0, 10_000)  # not due: the sweeper waits

    await fetch(
        "UPDATE message_outbox SET next_attempt_at = now() - interval '1 hour'"
        " WHERE message_id = {}",
        row["message_id"],
    )
    assert await sweep_outbox(services=services) >= 1
    await settle(client)

    assert sent_ids(fake_plugin).count(created["id"]) == 1
    assert (await message_row(created["id"]))["status"] == "sent"


def test_backoff_is_exponential_with_full_jitter_and_capped():
    top = lambda: 1.0  # noqa: E731 - the largest draw
    assert [backoff_delay(n, base=1, cap=300, rand=top) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff_delay(12, base=1, cap=300, rand=top) == 300
    assert backoff_delay(3, base=1, cap=300, rand=lambda: 0.5) == 2
    assert backoff_delay(1, base=1, cap=300, rand=lambda: 0.0) == 0
    assert backoff_delay(1, base=1, cap=300, retry_after=30, rand=top) == 30
    assert backoff_delay(5, base=1, cap=300, retry_after=2, rand=top) == 16


async def test_permanent_error_fails_with_the_providers_reason(client, start_chat, fake_plugin):
    fake_plugin.provider.fail_next(
        PermanentSendError(
            "Recipient is not a WhatsApp user",
            code="invalid_recipient",
            details={"provider_code": 131026},
        )
    )
    chat = await start_chat()

    created = await (await send_text(client, chat)).json()
    await settle(client)

    stored = await message_row(created["id"])
    assert stored["status"] == "failed"
    assert stored["error"] == {
        "code": "invalid_recipient",
        "message": "Recipient is not a WhatsApp user",
        "details": {"provider_code": 131026},
    }
    [event] = await _events(chat.conversation_id, "message.status")
    assert event["data"]["status"] == "failed"
    assert event["data"]["error"]["code"] == "invalid_recipient"
    channel = (await fetch("SELECT state FROM channels WHERE id = {}", chat.channel.id))[0]
    assert channel["state"] != "unhealthy"


async def test_unhealthy_channel_error_marks_the_channel(client, start_chat, fake_plugin):
    fake_plugin.provider.fail_next(
        PermanentSendError("Access token expired", code="auth", channel_unhealthy=True)
    )
    chat = await start_chat()

    created = await (await send_text(client, chat)).json()
    await settle(client)

    assert (await message_row(created["id"]))["status"] == "failed"
    channel = (await fetch("SELECT * FROM channels WHERE id = {}", chat.channel.id))[0]
    assert (channel["state"], channel["state_detail"]) == ("unhealthy", "Access token expired")
    events = await fetch(
        "SELECT data FROM events WHERE tenant = {} AND type = 'channel.state'",
        chat.company.tenant_id,
    )
    assert [(e["data"]["state"], e["data"]["detail"]) for e in events] == [
        ("unhealthy", "Access token expired")
    ]


async def test_reply_carries_the_quoted_provider_id(client, start_chat, fake_plugin):
    chat = await start_chat()
    [inbound] = await fetch(
        "SELECT id FROM messages WHERE conversation = {} AND direction = 'in'",
        chat.conversation_id,
    )

    resp = await client.post(
        chat.url,
        json={"type": "text", "text": "Respondendo", "reply_to_message_id": str(inbound["id"])},
        headers=chat.headers,
    )
    assert resp.status == 202, await resp.text()
    created = await resp.json()
    await settle(client)

    assert created["reply_to_id"] == str(inbound["id"])
    [sent] = fake_plugin.provider.sent
    assert sent.reply_to_provider_message_id == chat.inbound_provider_id

    unknown = await client.post(
        chat.url,
        json={"type": "text", "text": "x", "reply_to_message_id": str(uuid.uuid4())},
        headers=chat.headers,
    )
    assert unknown.status == 422


async def test_bad_bodies_are_422(client, start_chat):
    chat = await start_chat()
    bodies = [
        {},
        {"type": "text"},
        {"type": "text", "text": ""},
        {"type": "fax", "text": "x"},
        {"type": "template"},
        {"type": "template", "template_id": str(uuid.uuid4()), "template": {"name": "a"}},
        {"type": "text", "text": "x", "extra": 1},
    ]
    for body in bodies:
        resp = await client.post(chat.url, json=body, headers=chat.headers)
        assert resp.status == 422, (body, await resp.text())
        assert (await resp.json())["error"]["code"] == "validation_error"


async def test_closed_conversation_is_409_and_keeps_its_history(client, start_chat, fake_plugin):
    chat = await start_chat()
    await fetch(
        "UPDATE conversations SET status = 'CLOSED', closed_at = now() WHERE id = {}",
        chat.conversation_id,
    )

    resp = await send_text(client, chat)

    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "conversation_closed"
    history = await client.get(chat.url, headers=chat.headers)
    assert history.status == 200
    assert len((await history.json())["items"]) == 1
    await settle(client)
    assert fake_plugin.provider.sent == []


async def test_agent_of_another_department_gets_404(client, start_chat, make_company):
    company = await make_company()
    sales, support = (
        Department(tenant=company.tenant_id, name="Vendas"),
        Department(tenant=company.tenant_id, name="Suporte"),
    )
    await sales.save()
    await support.save()
    outsider, insider = await company.add("agent"), await company.add("agent")
    await DepartmentMember(
        tenant=company.tenant_id, department=support.id, user=outsider.user_id
    ).save()
    await DepartmentMember(
        tenant=company.tenant_id, department=sales.id, user=insider.user_id
    ).save()
    chat = await start_chat(company=company, department_id=sales.id)

    outsider_headers = await login(client, outsider)
    for resp in (
        await send_text(client, chat, headers=outsider_headers),
        await client.get(chat.url, headers=outsider_headers),
    ):
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"

    insider_headers = await login(client, insider)
    assert (await send_text(client, chat, headers=insider_headers)).status == 202
    assert (await client.get(chat.url, headers=insider_headers)).status == 200


async def test_other_companies_and_unknown_ids_are_404(client, start_chat, make_company):
    chat = await start_chat()
    stranger = await make_company()
    headers = await login(client, stranger.owner)

    assert (await send_text(client, chat, headers=headers)).status == 404
    assert (await client.get(chat.url, headers=headers)).status == 404
    missing = f"/api/v1/conversations/{uuid.uuid4()}/messages"
    assert (await client.get(missing, headers=chat.headers)).status == 404
    assert (
        await client.get("/api/v1/conversations/nope/messages", headers=chat.headers)
    ).status == 404


async def test_viewer_reads_history_but_cannot_send(client, start_chat):
    chat = await start_chat()
    viewer = await chat.company.add("viewer")
    headers = await login(client, viewer)

    assert (await client.get(chat.url, headers=headers)).status == 200
    resp = await send_text(client, chat, headers=headers)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "permission_denied"


async def test_disabled_channel_plugin_is_409(client, start_chat):
    chat = await start_chat()
    await fetch(
        "UPDATE tenant_plugins SET enabled = false WHERE tenant = {} AND plugin = 'fakechannel'",
        chat.company.tenant_id,
    )
    await plugins_changed(client.app[SERVICES], chat.company.tenant_id)  # as the API does

    resp = await send_text(client, chat)

    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "channel_unavailable"


async def test_history_is_newest_first_across_pages(client, start_chat):
    chat = await start_chat()
    sent_ids = []
    for n in range(4):
        sent_ids.append((await (await send_text(client, chat, f"msg {n}")).json())["id"])
    await settle(client)

    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        resp = await client.get(chat.url + query, headers=chat.headers)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        seen.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert [m["id"] for m in seen[:4]] == list(reversed(sent_ids))
    assert seen[4]["direction"] == "in"
    assert seen[4]["content"]["text"] == "Oi, preciso de ajuda"
    assert all(m["status"] == "sent" for m in seen[:4])
    assert seen[0]["content"]["kind"] == "text"
    stamps = [(dt.datetime.fromisoformat(m["created_at"]), m["id"]) for m in seen]
    assert stamps == sorted(stamps, reverse=True)
    bad = await client.get(chat.url + "?cursor=nope", headers=chat.headers)
    assert bad.status == 400
