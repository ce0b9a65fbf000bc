"""Unread counts (per conversation, per category) and POST .../read with the read receipt."""

from __future__ import annotations

import datetime as dt
from typing import Any

from guiche.channels import PermanentSendError
from tests.conftest import login

from .conftest import Chat, text_message


async def _conversation(client: Any, chat: Chat, headers: dict[str, str] | None = None) -> dict:
    resp = await client.get(
        f"/api/v1/conversations/{chat.conversation_id}", headers=headers or chat.headers
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _summary(client: Any, headers: dict[str, str], **params: Any) -> dict[str, int]:
    resp = await client.get("/api/v1/conversations/unread", params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _read(client: Any, chat: Chat, headers: dict[str, str] | None = None) -> Any:
    return await client.post(
        f"/api/v1/conversations/{chat.conversation_id}/read", headers=headers or chat.headers
    )


async def test_unread_counts_follow_inbound_messages_and_the_read_marker(
    client, start_chat, post_webhook, fake_plugin
):
    chat = await start_chat(inbound_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    assert (await _conversation(client, chat))["unread_count"] == 1
    assert await _summary(client, chat.headers) == {
        "bot": 0,
        "pending": 1,
        "active": 0,
        "closed": 0,
    }

    resp = await _read(client, chat)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["receipt"] == "sent"
    [receipt] = fake_plugin.provider.read
    assert receipt.provider_message_id == chat.inbound_provider_id
    assert receipt.sender.phone == "+5511987654321"
    assert (await _conversation(client, chat))["unread_count"] == 0
    assert sum((await _summary(client, chat.headers)).values()) == 0

    for text in ("mais uma coisa", "e outra"):
        await post_webhook(chat.channel, [text_message(text, at=dt.datetime.now(dt.UTC))])
    listed = await client.get("/api/v1/conversations", headers=chat.headers)
    [item] = [i for i in (await listed.json())["items"] if i["id"] == str(chat.conversation_id)]
    assert item["unread_count"] == 2
    assert (await _summary(client, chat.headers))["pending"] == 1


async def test_markers_are_per_person(client, start_chat):
    chat = await start_chat()
    admin = await login(client, await chat.company.add("admin"))
    assert (await _read(client, chat)).status == 200
    assert (await _conversation(client, chat))["unread_count"] == 0
    assert (await _conversation(client, chat, admin))["unread_count"] == 1
    assert (await _summary(client, admin, scope="all"))["pending"] == 1


async def test_a_failed_receipt_still_moves_the_marker(client, start_chat, fake_plugin):
    chat = await start_chat()
    fake_plugin.provider.fail_next(PermanentSendError("nope", code="unsupported"))
    resp = await _read(client, chat)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["receipt"] == "failed"
    assert (await _conversation(client, chat))["unread_count"] == 0


async def test_reading_is_visibility_and_tenant_checked(client, start_chat, make_company):
    chat = await start_chat()
    stranger = await login(client, (await make_company()).owner)
    assert (await _read(client, chat, stranger)).status == 404
    outsider = await login(client, await chat.company.add("agent"))
    # the queue of no department is every agent's to see, so any agent may read it
    assert (await _read(client, chat, outsider)).status == 200
    key = await client.post("/api/v1/api-keys", json={"name": "CRM"}, headers=chat.headers)
    key_headers = {"x-api-key": (await key.json())["key"]}
    refused = await _read(client, chat, key_headers)
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "user_required"
    assert (await _conversation(client, chat, key_headers))["unread_count"] is None
