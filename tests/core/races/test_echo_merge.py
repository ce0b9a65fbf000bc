"""A provider that echoes our own sends as `from_me` messages (Evolution's `send.message`)
may post the echo before our worker commits: ingest stores it and claims the provider
id, and the sender then merges it into our message instead of leaving a duplicate."""

from __future__ import annotations

from typing import Any

from guiche.channels import DeliveryStatus, OutboundMessage
from guiche.realtime import events as ev
from tests.conftest import published_events
from tests.core.outbound.conftest import message_row, send_text, services_of_client, settle

from .conftest import echo_of, event_rows, key_holder, outbound_rows, parked, status


async def test_an_echo_posted_during_the_send_is_merged_into_our_message(
    client, start_chat, fake_plugin, post_webhook
):
    chat = await start_chat()
    answers: list[dict[str, Any]] = []
    echoes: list[dict[str, Any]] = []

    async def provider_echoes_first(message: OutboundMessage, provider_id: str) -> None:
        resp = await post_webhook(
            chat.channel,
            [echo_of(message, provider_id)],
            [status(provider_id, DeliveryStatus.READ)],  # lands on the echo, for now
        )
        answers.append(await resp.json())
        echoes.extend(await outbound_rows(chat.conversation_id))

    fake_plugin.provider.on_send = provider_echoes_first
    with published_events(services_of_client(client).bus) as seen:
        created = await (await send_text(client, chat, "Seu pedido sai hoje")).json()
        await settle(client)

    assert (answers[0]["messages"], answers[0]["statuses"]) == (1, 1)
    [echo] = [row for row in echoes if str(row["id"]) != created["id"]]
    assert (echo["sender"], echo["payload"]["normalised"]["from_me"]) == (None, True)
    ours = await message_row(created["id"])
    assert [row["id"] for row in await outbound_rows(chat.conversation_id)] == [ours["id"]]
    assert ours["status"] == "read"  # what the echo had reached is carried over
    assert ours["body"] == "Seu pedido sai hoje"
    provider_id = ours["provider_message_id"]
    assert await key_holder(chat.channel.id, provider_id) == ours["id"]

    [merged] = await event_rows(chat.conversation_id, ev.MESSAGE_MERGED)
    assert merged["data"] == {
        "id": str(echo["id"]),
        "merged_into": created["id"],
        "conversation_id": str(chat.conversation_id),
        "provider_message_id": provider_id,
    }
    mine = [e for e in seen if e.conversation_id == chat.conversation_id]
    assert [e.type for e in mine if e.type != ev.MESSAGE_NEW] == [
        ev.MESSAGE_STATUS,  # read, on the echo
        ev.MESSAGE_STATUS,  # sent, ours
        ev.MESSAGE_MERGED,
        ev.MESSAGE_STATUS,  # read, ours
    ]
    assert mine[-1].data["id"] == ours["id"] and mine[-1].data["status"] == "read"
    assert mine[-2].data["id"] == echo["id"]

    # the echo and the ack come again: the key is ours, nothing is stored or moved
    resp = await post_webhook(
        chat.channel,
        [echo_of(fake_plugin.provider.sent[0], provider_id)],
        [status(provider_id, DeliveryStatus.READ)],
    )
    replay = await resp.json()
    assert (replay["messages"], replay["duplicates"], replay["statuses"]) == (0, 1, 0)
    assert [row["id"] for row in await outbound_rows(chat.conversation_id)] == [ours["id"]]
    assert len(await event_rows(chat.conversation_id, ev.MESSAGE_STATUS)) == 3


async def test_statuses_parked_before_the_echo_still_reach_our_message(
    client, start_chat, fake_plugin, post_webhook
):
    """delivered (no key yet: parked), then the echo (claims the key): the sender merges
    the echo and applies the parked status to its own message."""
    chat = await start_chat()

    async def provider_acks_then_echoes(message: OutboundMessage, provider_id: str) -> None:
        await post_webhook(chat.channel, statuses=[status(provider_id, DeliveryStatus.DELIVERED)])
        await post_webhook(chat.channel, [echo_of(message, provider_id)])

    fake_plugin.provider.on_send = provider_acks_then_echoes
    created = await (await send_text(client, chat)).json()
    await settle(client)

    ours = await message_row(created["id"])
    assert ours["status"] == "delivered"
    assert [row["id"] for row in await outbound_rows(chat.conversation_id)] == [ours["id"]]
    assert await parked(chat.channel.id) == []
    assert len(await event_rows(chat.conversation_id, ev.MESSAGE_MERGED)) == 1
    statuses = [
        e["data"]["status"] for e in await event_rows(chat.conversation_id, "message.status")
    ]
    assert statuses == ["sent", "delivered"]


async def test_an_echo_after_the_commit_is_a_duplicate_and_a_phone_message_is_kept(
    client, start_chat, fake_plugin, post_webhook
):
    """The usual order needs no merge; a message typed on the phone (its own provider
    id) is never mistaken for an echo."""
    chat = await start_chat()
    created = await (await send_text(client, chat)).json()
    await settle(client)
    ours = await message_row(created["id"])
    [sent] = fake_plugin.provider.sent

    late = await post_webhook(chat.channel, [echo_of(sent, ours["provider_message_id"])])
    typed = await post_webhook(chat.channel, [echo_of(sent, "fake.typed-on-the-phone")])

    assert (await late.json())["duplicates"] == 1
    assert (await typed.json())["messages"] == 1
    rows = await outbound_rows(chat.conversation_id)
    assert sorted(r["provider_message_id"] for r in rows) == sorted(
        [ours["provider_message_id"], "fake.typed-on-the-phone"]
    )
    assert await event_rows(chat.conversation_id, ev.MESSAGE_MERGED) == []
