"""Settling a successful send: one statement (`guiche_settle_sent`) when nothing raced it,
the full Python path (`_sent_raced`, one transaction) when the provider's webhooks beat
our commit (parked statuses, an echo holding the key). The races themselves are covered
in tests/core/races; here: which path runs, what each records, and what the statement
leaves untouched when it hands over."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest

from guiche.channels import (
    DeliveryStatus,
    OutboundMessage,
    StatusUpdate,
)
from guiche.inbound.early_statuses import lock_name
from guiche.outbound import groups, sender
from guiche.realtime import events as ev
from tests.conftest import published_events
from tests.core.outbound.conftest import (
    Chat,
    echo_of,
    fetch,
    message_row,
    send_text,
    services_of_client,
    settle,
)


@pytest.fixture
def raced(monkeypatch: pytest.MonkeyPatch) -> list[uuid.UUID]:
    """The ids of the messages settled through the slow path."""
    calls: list[uuid.UUID] = []
    slow = sender._sent_raced

    async def spy(services: Any, claim: Any, *args: Any) -> Any:
        calls.append(claim.message_id)
        return await slow(services, claim, *args)

    monkeypatch.setattr(sender, "_sent_raced", spy)
    return calls


def _status(provider_id: str, value: DeliveryStatus) -> StatusUpdate:
    return StatusUpdate(
        provider_message_id=provider_id, status=value, timestamp=dt.datetime.now(dt.UTC)
    )


async def _events(conversation_id: uuid.UUID, kind: str) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT * FROM events WHERE conversation = {} AND type = {} ORDER BY seq",
        conversation_id,
        kind,
    )


async def _pending_message(chat: Chat) -> dict[str, Any]:
    """An outbound message waiting in the outbox, as the API leaves it (no kick)."""
    message_id = uuid.uuid4()
    [row] = await fetch(
        "INSERT INTO messages (id, tenant, conversation, channel, direction, body, status)"
        " VALUES ({}, {}, {}, {}, 'out', 'oi', 'pending') RETURNING id, created_at, status",
        message_id,
        chat.company.tenant_id,
        chat.conversation_id,
        chat.channel.id,
    )
    await fetch(
        "INSERT INTO message_outbox (message_id, message_created_at, tenant) VALUES ({}, {}, {})",
        message_id,
        row["created_at"],
        chat.company.tenant_id,
    )
    return row


async def _settle_sql(conn: Any, chat: Chat, message: dict[str, Any], provider_id: str) -> Any:
    return await conn.fetchrow(
        groups.SETTLE_SENT,
        message["id"],
        message["created_at"],
        "sent",
        provider_id,
        chat.channel.id,
        chat.company.tenant_id,
        lock_name(chat.channel.id, provider_id),
        chat.conversation_id,
        None,
        None,
        '{"status": "sent"}',
    )


async def test_an_unraced_send_settles_in_one_statement_with_the_same_event(
    client, start_chat, fake_plugin, raced
):
    chat = await start_chat()
    with published_events(services_of_client(client).bus) as seen:
        created = await (await send_text(client, chat)).json()
        await settle(client)

    assert raced == []
    stored = await message_row(created["id"])
    provider_id = stored["provider_message_id"]
    assert stored["status"] == "sent" and stored["error"] is None
    assert not await fetch("SELECT 1 FROM message_outbox WHERE message_id = {}", stored["id"])
    keys = await fetch(
        "SELECT * FROM message_keys WHERE channel = {} AND provider_message_id = {}",
        chat.channel.id,
        provider_id,
    )
    assert [(k["message_id"], k["message_created_at"], k["tenant"]) for k in keys] == [
        (stored["id"], stored["created_at"], chat.company.tenant_id)
    ]
    # the event as `record_events` stored it before: same columns, same data
    [event] = await _events(chat.conversation_id, ev.MESSAGE_STATUS)
    assert (event["tenant"], event["department"], event["assignee"]) == (
        chat.company.tenant_id,
        None,
        None,
    )
    assert event["data"] == {
        "id": created["id"],
        "conversation_id": str(chat.conversation_id),
        "status": "sent",
        "error": None,
        "provider_message_id": provider_id,
        "attempts": 1,
    }
    # and the bus got that event, sequenced
    [published] = [e for e in seen if e.type == ev.MESSAGE_STATUS]
    assert (published.seq, published.created_at) == (event["seq"], event["created_at"])
    assert published.tenant_id == chat.company.tenant_id
    assert published.conversation_id == chat.conversation_id
    assert published.data == {
        "id": stored["id"],
        "conversation_id": chat.conversation_id,
        "status": "sent",
        "error": None,
        "provider_message_id": provider_id,
        "attempts": 1,
    }


async def test_a_status_parked_before_the_settle_is_applied_by_the_slow_path(
    client, start_chat, fake_plugin, post_webhook, raced
):
    chat = await start_chat()

    async def provider_acks_first(message: OutboundMessage, provider_id: str) -> None:
        await post_webhook(chat.channel, statuses=[_status(provider_id, DeliveryStatus.DELIVERED)])

    fake_plugin.provider.on_send = provider_acks_first
    created = await (await send_text(client, chat)).json()
    await settle(client)

    assert raced == [uuid.UUID(created["id"])]
    stored = await message_row(created["id"])
    assert stored["status"] == "delivered"
    assert not await fetch("SELECT 1 FROM early_statuses WHERE channel = {}", chat.channel.id)
    assert [
        e["data"]["status"] for e in await _events(chat.conversation_id, ev.MESSAGE_STATUS)
    ] == ["sent", "delivered"]

    # the next send, unraced, takes the fast path again
    fake_plugin.provider.on_send = None
    await send_text(client, chat, "de novo")
    await settle(client)
    assert len(raced) == 1


async def test_an_echo_stored_before_the_settle_is_merged_by_the_slow_path(
    client, start_chat, fake_plugin, post_webhook, raced
):
    chat = await start_chat()

    async def provider_echoes_first(message: OutboundMessage, provider_id: str) -> None:
        await post_webhook(chat.channel, [echo_of(message, provider_id)])

    fake_plugin.provider.on_send = provider_echoes_first
    created = await (await send_text(client, chat)).json()
    await settle(client)

    assert raced == [uuid.UUID(created["id"])]
    outbound = await fetch(
        "SELECT id FROM messages WHERE conversation = {} AND direction = 'out'",
        chat.conversation_id,
    )
    assert [row["id"] for row in outbound] == [uuid.UUID(created["id"])]
    stored = await message_row(created["id"])
    assert stored["status"] == "sent"
    [merged] = await _events(chat.conversation_id, ev.MESSAGE_MERGED)
    assert merged["data"]["merged_into"] == created["id"]


async def test_the_statement_changes_nothing_when_it_hands_over(client, start_chat):
    chat = await start_chat()
    services = services_of_client(client)
    message = await _pending_message(chat)
    parked_id, held_id = f"fake.{uuid.uuid4().hex}", f"fake.{uuid.uuid4().hex}"
    await fetch(
        "INSERT INTO early_statuses (channel, provider_message_id, status, timestamp)"
        " VALUES ({}, {}, 'read', now())",
        chat.channel.id,
        parked_id,
    )
    await fetch(
        "INSERT INTO message_keys (channel, provider_message_id, tenant, message_id,"
        " message_created_at) VALUES ({}, {}, {}, {}, now())",
        chat.channel.id,
        held_id,
        chat.company.tenant_id,
        uuid.uuid4(),
    )
    events_before = len(
        await fetch("SELECT seq FROM events WHERE conversation = {}", chat.conversation_id)
    )

    async with services.db.pool.acquire() as conn:
        for provider_id in (parked_id, held_id):
            row = await _settle_sql(conn, chat, message, provider_id)
            assert (row["outcome"], row["seq"]) == ("slow", None)

    assert (await message_row(message["id"]))["status"] == "pending"
    assert await fetch("SELECT 1 FROM message_outbox WHERE message_id = {}", message["id"])
    assert len(await fetch("SELECT 1 FROM early_statuses WHERE channel = {}", chat.channel.id)) == 1
    holders = await fetch(
        "SELECT message_id FROM message_keys WHERE channel = {} AND message_id = {}",
        chat.channel.id,
        message["id"],
    )
    assert holders == []
    after = await fetch("SELECT seq FROM events WHERE conversation = {}", chat.conversation_id)
    assert len(after) == events_before


async def test_a_message_no_longer_pending_is_skipped_and_its_key_not_kept(client, start_chat):
    chat = await start_chat()
    services = services_of_client(client)
    message = await _pending_message(chat)
    await fetch("UPDATE messages SET status = 'failed' WHERE id = {}", message["id"])
    provider_id = f"fake.{uuid.uuid4().hex}"

    async with services.db.pool.acquire() as conn:
        row = await _settle_sql(conn, chat, message, provider_id)

    assert row["outcome"] == "skipped"
    assert (await message_row(message["id"]))["status"] == "failed"
    assert not await fetch("SELECT 1 FROM message_outbox WHERE message_id = {}", message["id"])
    assert not await fetch(
        "SELECT 1 FROM message_keys WHERE channel = {} AND provider_message_id = {}",
        chat.channel.id,
        provider_id,
    )
    assert not await _events(chat.conversation_id, ev.MESSAGE_STATUS)


async def test_a_status_arriving_during_the_one_statement_settle_waits_and_applies(
    client, start_chat, post_webhook
):
    """The statement holds the key's advisory lock until its commit, like the slow path:
    a status webhook for the provider id waits, then finds the key instead of parking."""
    chat = await start_chat()
    services = services_of_client(client)
    message = await _pending_message(chat)
    provider_id = f"fake.{uuid.uuid4().hex}"

    async with services.db.pool.acquire() as conn, conn.transaction():
        assert (await _settle_sql(conn, chat, message, provider_id))["outcome"] == "sent"
        webhook = asyncio.create_task(
            post_webhook(chat.channel, statuses=[_status(provider_id, DeliveryStatus.DELIVERED)])
        )
        await _until_an_advisory_lock_waits()
    body = await (await webhook).json()

    assert (body["statuses"], body["ignored"]) == (1, 0)
    assert (await message_row(message["id"]))["status"] == "delivered"
    assert not await fetch("SELECT 1 FROM early_statuses WHERE channel = {}", chat.channel.id)


async def _until_an_advisory_lock_waits(within: float = 10.0) -> None:
    sql = (
        "SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
    )
    async with asyncio.timeout(within):
        while not (await fetch(sql))[0]["n"]:
            pass
