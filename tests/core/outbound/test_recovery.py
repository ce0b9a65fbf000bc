"""A send whose worker vanished is recovered after its lease, and never sent twice.

The claim is the durable "provider call started" record (see `guiche.outbound.outbox`).
A worker that dies holding it (cancelled mid-call, here; SIGKILLed in
test_worker_crash.py) leaves the next holder in doubt: it asks the provider when the
adapter can (`CAP_SEND_LOOKUP`), re-sends when the provider deduplicates
(`CAP_IDEMPOTENT_SEND`), and otherwise marks the message `unknown`. A claim that ended
before any provider call (released) is sent again, once.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from guiche.channels import OutboundMessage
from guiche.outbound import outbox, sender
from guiche.outbound.sender import send_message
from guiche.outbound.sweeper import sweep_outbox
from guiche.realtime import events as ev
from guiche.testing import FakeChannelPlugin
from tests.conftest import published_events

from .conftest import Chat, fetch, message_row, send_text, sent_ids, services_of_client, settle

WAIT = 10.0


async def _expire_lease(message_id: uuid.UUID) -> None:
    """The dead holder's lease runs out (time moved, instead of waited for)."""
    await fetch(
        "UPDATE message_outbox SET locked_until = now() - interval '1 second',"
        " next_attempt_at = now() - interval '1 hour' WHERE message_id = {}",
        message_id,
    )


async def _status_events(chat: Chat) -> list[dict[str, Any]]:
    rows = await fetch(
        "SELECT data FROM events WHERE conversation = {} AND type = 'message.status' ORDER BY seq",
        chat.conversation_id,
    )
    return [row["data"] for row in rows]


async def _die_mid_call(client: Any, chat: Chat, plugin: FakeChannelPlugin) -> uuid.UUID:
    """Send a message whose worker is killed inside the provider call, after the provider
    accepted it (its `sent` list has it) and before any answer reached the worker."""
    in_call: asyncio.Future[asyncio.Task[Any]] = asyncio.get_running_loop().create_future()

    async def hang(message: OutboundMessage, provider_message_id: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        in_call.set_result(task)
        await asyncio.Event().wait()

    plugin.provider.on_send = hang
    created = await (await send_text(client, chat)).json()
    worker_task = await asyncio.wait_for(in_call, WAIT)
    worker_task.cancel()  # the worker dies here
    await settle(client)
    plugin.provider.on_send = None
    message_id = uuid.UUID(created["id"])
    assert (await message_row(message_id))["status"] == "pending"
    assert message_id not in await outbox.due(0, 10_000)  # leased: the sweeper leaves it
    return message_id


async def _die_after_claim(client: Any, chat: Chat, plugin: FakeChannelPlugin) -> uuid.UUID:
    """Send a message whose worker is killed once its claim committed, before the provider
    saw anything (the provider answers after an hour)."""
    plugin.provider.delay = 3600
    created = await (await send_text(client, chat)).json()
    message_id = uuid.UUID(created["id"])
    async with asyncio.timeout(WAIT):
        while True:  # until the claim committed
            claimed = await fetch(
                "SELECT 1 FROM message_outbox WHERE message_id = {} AND locked_until > now()",
                message_id,
            )
            if claimed:
                break
            await asyncio.sleep(0.01)
    for task in list(services_of_client(client).tasks.broker._running_tasks):
        task.cancel()  # the worker dies
    await settle(client)
    plugin.provider.delay = 0
    assert plugin.provider.sent == []
    return message_id


async def _recover(client: Any, message_id: uuid.UUID) -> None:
    """The lease ends, the sweeper hands the row to a live worker (in-process)."""
    await _expire_lease(message_id)
    assert message_id in await outbox.due(0, 10_000)
    assert await sweep_outbox(services=services_of_client(client)) >= 1
    await settle(client)


async def test_send_accepted_by_a_provider_that_cannot_be_asked_is_marked_unknown(
    client, start_chat, fake_plugin
):
    chat = await start_chat()
    services = services_of_client(client)
    message_id = await _die_mid_call(client, chat, fake_plugin)
    assert sent_ids(fake_plugin) == [str(message_id)]

    with published_events(services.bus) as seen:
        await _recover(client, message_id)

    assert sent_ids(fake_plugin) == [str(message_id)]  # not sent a second time
    stored = await message_row(message_id)
    assert stored["status"] == "unknown"
    assert stored["error"]["code"] == "send_outcome_unknown"
    assert not await fetch("SELECT 1 FROM message_outbox WHERE message_id = {}", message_id)
    # Agents see it: the event is recorded (resync) and published (live sockets).
    [event] = await _status_events(chat)
    assert (event["id"], event["status"]) == (str(message_id), "unknown")
    assert event["error"]["code"] == "send_outcome_unknown"
    assert [e.data["status"] for e in seen if e.type == ev.MESSAGE_STATUS] == ["unknown"]
    listed = await (await client.get(chat.url, headers=chat.headers)).json()
    [mine] = [m for m in listed["items"] if m["id"] == str(message_id)]
    assert (mine["status"], mine["error"]["code"]) == ("unknown", "send_outcome_unknown")
    # Nothing ever sends it again: a redelivered task or a further sweep finds no row.
    assert await send_message(str(message_id), services=services) == "skipped"
    assert await sweep_outbox(services=services) == 0
    assert sent_ids(fake_plugin) == [str(message_id)]


@pytest.mark.parametrize("fake_plugin", [{"send_lookup": True}], indirect=True)
async def test_crashed_send_is_reconciled_through_the_providers_lookup(
    client, start_chat, fake_plugin
):
    chat = await start_chat()
    message_id = await _die_mid_call(client, chat, fake_plugin)
    original = fake_plugin.provider.accepted[message_id]

    await _recover(client, message_id)

    assert sent_ids(fake_plugin) == [str(message_id)]
    assert fake_plugin.provider.lookups == 1
    stored = await message_row(message_id)
    assert (stored["status"], stored["provider_message_id"]) == (
        "sent",
        original.provider_message_id,
    )
    [event] = await _status_events(chat)
    assert (event["status"], event["attempts"]) == ("sent", 2)
    # The provider id was recorded: its status webhooks find the message.
    [key] = await fetch(
        "SELECT message_id FROM message_keys WHERE provider_message_id = {}",
        original.provider_message_id,
    )
    assert key["message_id"] == message_id


@pytest.mark.parametrize("fake_plugin", [{"idempotent": True}], indirect=True)
async def test_crashed_send_is_resent_to_a_provider_that_deduplicates(
    client, start_chat, fake_plugin
):
    chat = await start_chat()
    message_id = await _die_mid_call(client, chat, fake_plugin)
    original = fake_plugin.provider.accepted[message_id]

    await _recover(client, message_id)

    assert sent_ids(fake_plugin) == [str(message_id)]  # the repeat was deduplicated
    stored = await message_row(message_id)
    assert (stored["status"], stored["provider_message_id"]) == (
        "sent",
        original.provider_message_id,
    )


@pytest.mark.parametrize("fake_plugin", [{"send_lookup": True}], indirect=True)
async def test_claim_that_never_reached_the_provider_is_sent_once(client, start_chat, fake_plugin):
    """A holder died after claiming, before its call: the provider says it has nothing."""
    chat = await start_chat()
    message_id = await _die_after_claim(client, chat, fake_plugin)

    await _recover(client, message_id)

    assert sent_ids(fake_plugin) == [str(message_id)]
    assert fake_plugin.provider.lookups == 1
    assert (await message_row(message_id))["status"] == "sent"


async def test_send_released_before_the_provider_call_is_sent_again_once(
    client, start_chat, fake_plugin, monkeypatch
):
    """Preparing the send failed (the channel could not be loaded): no call started, so
    the claim is released, not left in doubt, and the next attempt sends."""
    chat = await start_chat()
    services = services_of_client(client)
    real = sender.load_channel_adapter
    failures = [ConnectionResetError("database connection reset")]

    async def flaky(services: Any, channel_id: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(services, channel_id)

    monkeypatch.setattr(sender, "load_channel_adapter", flaky)
    created = await (await send_text(client, chat)).json()
    await settle(client)

    assert sent_ids(fake_plugin) == [created["id"]]
    stored = await message_row(created["id"])
    assert stored["status"] == "sent"
    [event] = await _status_events(chat)
    assert (event["status"], event["attempts"]) == ("sent", 2)
    assert await send_message(created["id"], services=services) == "skipped"
    assert sent_ids(fake_plugin) == [created["id"]]


async def test_abandoned_claim_blocks_until_its_lease_ends(client, start_chat, fake_plugin):
    """A claim is exclusive while its lease lasts, and void once someone else holds it."""
    chat = await start_chat()
    services = services_of_client(client)
    message_id = await _die_after_claim(client, chat, fake_plugin)

    assert await send_message(str(message_id), services=services) == "skipped"  # leased
    await _expire_lease(message_id)
    dead_token = (await fetch("SELECT lock_token FROM message_outbox"))[0]["lock_token"]
    live = await outbox.claim(message_id, lease_seconds=3600)
    assert live is not None and live.in_doubt and live.attempts == 2
    dead = outbox.Claim(message_id, live.tenant_id, live.message_created_at, 1, dead_token)
    assert not await outbox.reschedule(dead, 0, {"code": "late"})  # the dead lease is void
    assert await outbox.reschedule(live, 0, {"code": "test"})
    again = await outbox.claim(message_id, lease_seconds=3600)
    assert again is not None and not again.in_doubt  # a released claim leaves no doubt


@pytest.mark.parametrize(
    ("fake_plugin", "client_overrides"),
    [({"send_lookup": True}, {"send_timeout_seconds": 0.3})],
    indirect=True,
)
async def test_timed_out_send_is_looked_up_before_its_retry(client, start_chat, fake_plugin):
    """The provider accepted but answered after our timeout: the retry asks first."""
    chat = await start_chat()

    async def answer_late(message: OutboundMessage, provider_message_id: str) -> None:
        fake_plugin.provider.on_send = None
        await asyncio.sleep(5)

    fake_plugin.provider.on_send = answer_late
    created = await (await send_text(client, chat)).json()
    await settle(client)

    assert sent_ids(fake_plugin) == [created["id"]]
    assert fake_plugin.provider.lookups == 1
    message_id = uuid.UUID(created["id"])
    stored = await message_row(message_id)
    assert (stored["status"], stored["provider_message_id"]) == (
        "sent",
        fake_plugin.provider.accepted[message_id].provider_message_id,
    )
    [event] = await _status_events(chat)
    assert (event["status"], event["attempts"]) == ("sent", 2)
