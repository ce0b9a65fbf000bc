"""Statuses a provider posts before our worker commits the send: parked by ingest, applied
by the sender in its `sent` transaction, expired when they were never ours."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from guiche.channel_host.runtime import ChannelRow
from guiche.channels import DeliveryStatus, OutboundMessage, ProviderError
from guiche.inbound.early_statuses import lock_key, park, purge_early_statuses, record_sent_key
from guiche.realtime import events as ev
from guiche.tasks.core import core_tasks
from tests.conftest import published_events
from tests.core.outbound.conftest import message_row, send_text, services_of_client, settle

from .conftest import (
    event_rows,
    fetch,
    key_holder,
    outbound_rows,
    parked,
    status,
    wait_for_advisory_lock_waiter,
)


async def test_statuses_posted_during_the_send_are_applied_when_it_commits(
    client, start_chat, fake_plugin, post_webhook
):
    chat = await start_chat()
    answers: list[dict[str, Any]] = []
    parked_meanwhile: list[dict[str, Any]] = []

    async def provider_acks_first(message: OutboundMessage, provider_id: str) -> None:
        resp = await post_webhook(
            chat.channel,
            statuses=[
                status(provider_id, DeliveryStatus.DELIVERED),
                status(provider_id, DeliveryStatus.READ),
            ],
        )
        answers.append(await resp.json())
        parked_meanwhile.extend(await parked(chat.channel.id))

    fake_plugin.provider.on_send = provider_acks_first
    with published_events(services_of_client(client).bus) as seen:
        created = await (await send_text(client, chat)).json()
        await settle(client)

    assert (answers[0]["statuses"], answers[0]["ignored"]) == (0, 2)
    assert sorted(row["status"] for row in parked_meanwhile) == ["delivered", "read"]
    stored = await message_row(created["id"])
    assert stored["status"] == "read"
    assert [row["id"] for row in await outbound_rows(chat.conversation_id)] == [stored["id"]]
    provider_id = stored["provider_message_id"]
    assert await key_holder(chat.channel.id, provider_id) == stored["id"]
    assert await parked(chat.channel.id) == []
    recorded = [
        e["data"]["status"] for e in await event_rows(chat.conversation_id, "message.status")
    ]
    assert recorded == ["sent", "delivered", "read"]
    published = [
        e.data["status"]
        for e in seen
        if e.type == ev.MESSAGE_STATUS and e.conversation_id == chat.conversation_id
    ]
    assert published == ["sent", "delivered", "read"]

    # the provider redelivers the same acks later: nothing moves, nothing is parked
    replay = await post_webhook(
        chat.channel,
        statuses=[
            status(provider_id, DeliveryStatus.READ),
            status(provider_id, DeliveryStatus.DELIVERED),
        ],
    )
    assert ((await replay.json())["statuses"], (await replay.json())["ignored"]) == (0, 2)
    assert (await message_row(created["id"]))["status"] == "read"
    assert await parked(chat.channel.id) == []
    assert len(await event_rows(chat.conversation_id, "message.status")) == 3


async def test_a_failure_reported_during_the_send_fails_the_message_with_its_error(
    client, start_chat, fake_plugin, post_webhook
):
    chat = await start_chat()
    error = ProviderError(code="131026", title="Message undeliverable")

    async def provider_rejects_first(message: OutboundMessage, provider_id: str) -> None:
        await post_webhook(
            chat.channel, statuses=[status(provider_id, DeliveryStatus.FAILED, error=error)]
        )

    fake_plugin.provider.on_send = provider_rejects_first
    created = await (await send_text(client, chat)).json()
    await settle(client)

    stored = await message_row(created["id"])
    assert stored["status"] == "failed"
    assert stored["error"]["code"] == "131026"
    assert await parked(chat.channel.id) == []
    recorded = [e["data"] for e in await event_rows(chat.conversation_id, "message.status")]
    assert [(d["status"], (d["error"] or {}).get("code")) for d in recorded] == [
        ("sent", None),
        ("failed", "131026"),
    ]


async def test_a_status_parked_while_the_sender_commits_is_not_missed(
    client, start_chat, fake_plugin
):
    """Ingest holds the key's lock with a status parked but not committed when the sender
    records the key: the sender waits for that commit and then applies the status."""
    chat = await start_chat()
    services = services_of_client(client)
    held, release = asyncio.Event(), asyncio.Event()
    holders: list[asyncio.Task[None]] = []

    async def ingest_in_flight(provider_id: str) -> None:
        async with services.db.transaction() as transaction:
            conn = transaction.connection
            await lock_key(conn, chat.channel.id, provider_id)
            await park(conn, chat.channel.id, status(provider_id, DeliveryStatus.READ))
            held.set()
            await release.wait()

    async def provider_acks_first(message: OutboundMessage, provider_id: str) -> None:
        holders.append(asyncio.create_task(ingest_in_flight(provider_id)))
        await held.wait()

    fake_plugin.provider.on_send = provider_acks_first
    created = await (await send_text(client, chat)).json()
    try:
        await wait_for_advisory_lock_waiter()  # the sender, blocked on the key's lock
    finally:
        release.set()
    await settle(client)
    await holders[0]

    assert (await message_row(created["id"]))["status"] == "read"
    assert await parked(chat.channel.id) == []


async def test_a_status_arriving_while_the_key_is_recorded_waits_and_applies(
    client, start_chat, post_webhook
):
    """The converse: a status webhook lands while the sender's transaction holds the lock;
    ingest waits for the commit, finds the key and applies the status without parking."""
    chat = await start_chat()
    services = services_of_client(client)
    message_id, provider_id = uuid.uuid4(), f"fake.{uuid.uuid4().hex}"
    [row] = await fetch(
        "INSERT INTO messages (id, tenant, conversation, channel, direction, body, status,"
        " provider_message_id) VALUES ({}, {}, {}, {}, 'out', 'resposta', 'sent', {})"
        " RETURNING id, created_at, conversation",
        message_id,
        chat.company.tenant_id,
        chat.conversation_id,
        chat.channel.id,
        provider_id,
    )
    message = {**row, "department": None, "assignee": None}
    channel = ChannelRow(chat.channel.id, chat.company.tenant_id, "fake")

    async with services.db.transaction() as transaction:
        assert await record_sent_key(transaction.connection, channel, message, provider_id) == []
        webhook = asyncio.create_task(
            post_webhook(chat.channel, statuses=[status(provider_id, DeliveryStatus.DELIVERED)])
        )
        await wait_for_advisory_lock_waiter()  # ingest, blocked on the key's lock
    resp = await webhook

    assert ((await resp.json())["statuses"], (await resp.json())["ignored"]) == (1, 0)
    assert (await message_row(message_id))["status"] == "delivered"
    assert await parked(chat.channel.id) == []


async def test_statuses_that_are_never_ours_expire(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    stranger, fresh = f"wamid.{uuid.uuid4().hex}", f"wamid.{uuid.uuid4().hex}"
    resp = await post_webhook(
        channel,
        statuses=[
            status(stranger, DeliveryStatus.DELIVERED),
            status(fresh, DeliveryStatus.DELIVERED),
        ],
    )
    assert (await resp.json())["ignored"] == 2
    await fetch(
        "UPDATE early_statuses SET created_at = now() - interval '25 hours'"
        " WHERE channel = {} AND provider_message_id = {}",
        channel.id,
        stranger,
    )

    purged = await purge_early_statuses(services=services_of_client(client))

    assert purged >= 1
    assert [row["provider_message_id"] for row in await parked(channel.id)] == [fresh]
    spec = core_tasks()["core.purge_early_statuses"]
    assert spec.func is purge_early_statuses and spec.schedule
