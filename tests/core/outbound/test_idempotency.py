"""Idempotency-Key on sends, and sends that are never duplicated by task redelivery."""

from __future__ import annotations

import asyncio
import uuid

from guiche.outbound.service import SEND_TASK

from .conftest import fetch, message_row, send_text, sent_ids, services_of_client, settle


async def _out_messages(conversation_id: uuid.UUID) -> list[dict]:
    return await fetch(
        "SELECT id FROM messages WHERE conversation = {} AND direction = 'out'", conversation_id
    )


async def test_retry_with_the_same_key_replays_the_first_answer(client, start_chat, fake_plugin):
    chat = await start_chat()
    headers = {**chat.headers, "Idempotency-Key": "pedido-4521-aviso"}

    first = await send_text(client, chat, "Saiu para entrega", headers=headers)
    await settle(client)
    again = await send_text(client, chat, "Saiu para entrega", headers=headers)
    await settle(client)

    assert first.status == again.status == 202
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json()
    assert sent_ids(fake_plugin) == [(await first.json())["id"]]
    assert len(await _out_messages(chat.conversation_id)) == 1


async def test_same_key_with_another_body_is_422(client, start_chat):
    chat = await start_chat()
    headers = {**chat.headers, "Idempotency-Key": "k-1"}
    assert (await send_text(client, chat, "primeiro", headers=headers)).status == 202

    resp = await send_text(client, chat, "outro texto", headers=headers)

    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "idempotency_key_reused"
    await settle(client)
    assert len(await _out_messages(chat.conversation_id)) == 1


async def test_keys_are_per_company(client, start_chat, fake_plugin):
    first, second = await start_chat(), await start_chat()
    for chat in (first, second):
        headers = {**chat.headers, "Idempotency-Key": "shared-key"}
        assert (await send_text(client, chat, "oi", headers=headers)).status == 202
    await settle(client)
    assert len(fake_plugin.provider.sent) == 2


async def test_overlong_key_is_422(client, start_chat):
    chat = await start_chat()
    headers = {**chat.headers, "Idempotency-Key": "x" * 201}
    resp = await send_text(client, chat, headers=headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "invalid_idempotency_key"


async def test_concurrent_duplicates_create_one_message(client, start_chat, fake_plugin):
    chat = await start_chat()
    headers = {**chat.headers, "Idempotency-Key": "clicked-five-times"}

    responses = await asyncio.gather(
        *(send_text(client, chat, "Confirmado!", headers=headers) for _ in range(5))
    )
    await settle(client)

    bodies = [await r.json() for r in responses]
    assert [r.status for r in responses] == [202] * 5
    assert len({b["id"] for b in bodies}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 4
    assert len(await _out_messages(chat.conversation_id)) == 1
    assert sent_ids(fake_plugin) == [bodies[0]["id"]]


async def test_redelivered_send_tasks_never_send_twice(client, start_chat, fake_plugin):
    """The same task delivered again (at once, concurrently, and after success) sends once."""
    fake_plugin.provider.delay = 0.05  # keep the first send in flight while duplicates arrive
    chat = await start_chat()
    queue = services_of_client(client).tasks

    created = await (await send_text(client, chat)).json()
    duplicates = [await queue.kick(SEND_TASK, created["id"]) for _ in range(3)]
    results = [await task.wait_result(timeout=10) for task in duplicates]
    await settle(client)
    late = await (await queue.kick(SEND_TASK, created["id"])).wait_result(timeout=10)

    outcomes = [r.return_value for r in results]  # the API's own kick may lose the race
    assert set(outcomes) <= {"sent", "skipped"} and outcomes.count("sent") <= 1
    assert late.return_value == "skipped"
    assert sent_ids(fake_plugin) == [created["id"]]
    assert (await message_row(created["id"]))["status"] == "sent"
