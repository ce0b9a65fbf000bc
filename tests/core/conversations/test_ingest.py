"""Ingestion through the real webhook route: identity, dedup, conversations, statuses."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from guiche.channels import (
    DeliveryStatus,
    ProviderError,
    StatusUpdate,
)
from guiche.contacts.phones import whatsapp_phone
from guiche.runtime.services import SERVICES
from tests.conftest import published_events

from .conftest import BASE_TIME, fetch, text_message


async def test_text_webhook_stores_contact_conversation_and_message(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    message = text_message("Oi, boa tarde!")

    resp = await post_webhook(channel, [message])

    assert resp.status == 200, await resp.text()
    assert (await resp.json())["messages"] == 1
    contacts = await fetch("SELECT * FROM contacts WHERE tenant = {}", company.tenant_id)
    assert [(c["phone"], c["name"]) for c in contacts] == [("+5511987654321", "Ana Souza")]
    conversations = await fetch("SELECT * FROM conversations WHERE tenant = {}", company.tenant_id)
    assert len(conversations) == 1
    assert conversations[0]["status"] == "PENDING"
    assert conversations[0]["last_inbound_at"] == BASE_TIME
    messages = await fetch("SELECT * FROM messages WHERE tenant = {}", company.tenant_id)
    assert len(messages) == 1
    stored = messages[0]
    assert (stored["direction"], stored["type"], stored["body"]) == ("in", "text", "Oi, boa tarde!")
    assert stored["provider_message_id"] == message.provider_message_id
    assert stored["payload"]["raw"] == {"text": {"body": "Oi, boa tarde!"}}
    assert stored["conversation"] == conversations[0]["id"]


async def test_replayed_webhook_stores_nothing_new_and_still_answers_200(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    batch = [text_message("primeira"), text_message("segunda")]

    first = await post_webhook(channel, batch)
    replay = await post_webhook(channel, batch)

    assert first.status == replay.status == 200
    assert (await replay.json())["duplicates"] == 2
    rows = await fetch("SELECT count(*) AS n FROM messages WHERE tenant = {}", company.tenant_id)
    assert rows[0]["n"] == 2


async def test_replay_days_later_is_still_deduplicated(
    client, make_company, make_channel, post_webhook
):
    """The key lives in the database, not a cache: age does not matter."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    message = text_message("velha", at=BASE_TIME - dt.timedelta(days=7))
    await post_webhook(channel, [message])
    await fetch(
        "UPDATE message_keys SET message_created_at = message_created_at - interval '7 days'"
        " WHERE channel = {}",
        channel.id,
    )
    replay = await post_webhook(channel, [message])
    assert (await replay.json())["duplicates"] == 1


async def test_bad_signature_is_401_and_stores_nothing(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)

    resp = await post_webhook(channel, [text_message()], signature="sha256=deadbeef")

    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_signature"
    rows = await fetch("SELECT count(*) AS n FROM messages WHERE tenant = {}", company.tenant_id)
    assert rows[0]["n"] == 0


async def test_unknown_disabled_or_mistyped_channels_are_404(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    disabled = await make_channel(company.tenant_id, enable=False)
    other = await make_company()
    enabled = await make_channel(other.tenant_id)

    assert (await post_webhook(disabled, [text_message()])).status == 404
    assert (await client.post(f"/webhooks/fake/{uuid.uuid4()}", data=b"{}")).status == 404
    assert (await client.post("/webhooks/fake/not-a-uuid", data=b"{}")).status == 404
    assert (await client.post(f"/webhooks/other/{enabled.id}", data=b"{}")).status == 404


async def test_username_only_sender_is_one_contact_by_provider_user_id(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    first = text_message("oi", phone=None, user_id="BR.7319046628150274", name="Bia")
    second = text_message("tudo bem?", phone=None, user_id="BR.7319046628150274", name="Bia")

    await post_webhook(channel, [first])
    await post_webhook(channel, [second])

    contacts = await fetch("SELECT * FROM contacts WHERE tenant = {}", company.tenant_id)
    assert len(contacts) == 1 and contacts[0]["phone"] is None
    identities = await fetch(
        "SELECT * FROM contact_identities WHERE tenant = {}", company.tenant_id
    )
    assert [(i["channel_type"], i["provider_user_id"]) for i in identities] == [
        ("fake", "BR.7319046628150274")
    ]
    conversations = await fetch("SELECT * FROM conversations WHERE tenant = {}", company.tenant_id)
    assert len(conversations) == 1


async def test_brazilian_number_without_ninth_digit_is_the_same_contact(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)

    await post_webhook(channel, [text_message("a", phone="553188887777")])
    await post_webhook(channel, [text_message("b", phone="5531988887777")])

    contacts = await fetch("SELECT phone FROM contacts WHERE tenant = {}", company.tenant_id)
    assert [c["phone"] for c in contacts] == ["+5531988887777"]


def test_whatsapp_phone_normalisation():
    assert whatsapp_phone("5511987654321") == "+5511987654321"
    assert whatsapp_phone("553188887777@s.whatsapp.net") == "+5531988887777"
    assert whatsapp_phone("5511987654321:12@s.whatsapp.net") == "+5511987654321"
    assert whatsapp_phone("551130304040") == "+551130304040"  # landline keeps 8 digits
    assert whatsapp_phone("123") is None
    assert whatsapp_phone(None) is None
    # Digits the phone library rejects are still the phone when plausibly E.164 ...
    assert whatsapp_phone("15551682817") == "+15551682817"  # Meta's test numbers
    # ... but not past 15 digits, nor behind a country code no country has.
    assert whatsapp_phone("5511987654321000") is None
    assert whatsapp_phone("99912345678") is None


async def test_sender_the_phone_library_rejects_is_stored_with_its_digits(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    await post_webhook(channel, [text_message("a", phone="15551682817")])
    await post_webhook(channel, [text_message("b", phone="15551682817")])
    contacts = await fetch("SELECT phone FROM contacts WHERE tenant = {}", company.tenant_id)
    assert [c["phone"] for c in contacts] == ["+15551682817"]


async def test_closed_conversation_reopens_as_a_new_one(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    await post_webhook(channel, [text_message("primeira")])
    await fetch(
        "UPDATE conversations SET status = 'CLOSED', closed_at = now() WHERE tenant = {}",
        company.tenant_id,
    )

    await post_webhook(channel, [text_message("de novo", at=BASE_TIME + dt.timedelta(hours=1))])

    rows = await fetch(
        "SELECT status FROM conversations WHERE tenant = {} ORDER BY created_at",
        company.tenant_id,
    )
    assert sorted(r["status"] for r in rows) == ["CLOSED", "PENDING"]


async def _outbound(channel: Any, provider_id: str, status: str = "sent") -> uuid.UUID:
    """An outbound message as the sender worker leaves it (id + key recorded)."""
    message_id = uuid.uuid4()
    await fetch(
        "INSERT INTO messages (id, created_at, tenant, channel, direction, body, status,"
        " provider_message_id) VALUES ({}, {}, {}, {}, 'out', 'resposta', {}, {})",
        message_id,
        BASE_TIME,
        channel.tenant_id,
        channel.id,
        status,
        provider_id,
    )
    await fetch(
        "INSERT INTO message_keys (channel, provider_message_id, tenant, message_id,"
        " message_created_at) VALUES ({}, {}, {}, {}, {})",
        channel.id,
        provider_id,
        channel.tenant_id,
        message_id,
        BASE_TIME,
    )
    return message_id


def _status(provider_id: str, status: DeliveryStatus, minutes: int, **extra: Any) -> StatusUpdate:
    return StatusUpdate(
        provider_message_id=provider_id,
        status=status,
        timestamp=BASE_TIME + dt.timedelta(minutes=minutes),
        **extra,
    )


async def test_statuses_only_move_forward(client, make_company, make_channel, post_webhook):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    message_id = await _outbound(channel, "wamid.out1")

    await post_webhook(channel, statuses=[_status("wamid.out1", DeliveryStatus.READ, 3)])
    late = await post_webhook(
        channel, statuses=[_status("wamid.out1", DeliveryStatus.DELIVERED, 2)]
    )
    failed_late = await post_webhook(
        channel,
        statuses=[
            _status("wamid.out1", DeliveryStatus.FAILED, 4, error=ProviderError(code="131026"))
        ],
    )

    assert (await late.json())["statuses"] == 0
    assert (await failed_late.json())["statuses"] == 0
    rows = await fetch("SELECT status, error FROM messages WHERE id = {}", message_id)
    assert rows[0]["status"] == "read" and rows[0]["error"] is None


async def test_failed_status_keeps_the_provider_error(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    message_id = await _outbound(channel, "wamid.out2")
    error = ProviderError(code="131047", title="Re-engagement message", message="24h")

    resp = await post_webhook(
        channel, statuses=[_status("wamid.out2", DeliveryStatus.FAILED, 1, error=error)]
    )

    assert (await resp.json())["statuses"] == 1
    rows = await fetch("SELECT status, error FROM messages WHERE id = {}", message_id)
    assert rows[0]["status"] == "failed"
    assert rows[0]["error"]["code"] == "131047"


async def test_statuses_for_unknown_messages_are_acknowledged_and_ignored(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    resp = await post_webhook(
        channel, statuses=[_status("wamid.nobody", DeliveryStatus.DELIVERED, 1)]
    )
    assert resp.status == 200
    assert (await resp.json())["ignored"] == 1


async def test_events_are_recorded_and_published_after_commit(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    services = client.server.app[SERVICES]
    with published_events(services.bus) as seen:
        await post_webhook(channel, [text_message("evento")])

    mine = [e for e in seen if e.tenant_id == company.tenant_id]
    assert [e.type for e in mine] == ["conversation.updated", "message.new"]
    stored = await fetch(
        "SELECT seq, type FROM events WHERE tenant = {} ORDER BY seq", company.tenant_id
    )
    assert [r["seq"] for r in stored] == [e.seq for e in mine]


async def test_new_conversation_is_auto_assigned_to_an_online_department_agent(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    agent = await company.add("agent")
    department_id = uuid.uuid4()
    await fetch(
        "INSERT INTO departments (id, tenant, name) VALUES ({}, {}, 'Vendas')",
        department_id,
        company.tenant_id,
    )
    await fetch(
        'INSERT INTO department_members (tenant, department, "user") VALUES ({}, {}, {})',
        company.tenant_id,
        department_id,
        agent.user_id,
    )
    await fetch(
        "UPDATE memberships SET status = 'online' WHERE tenant = {} AND \"user\" = {}",
        company.tenant_id,
        agent.user_id,
    )
    channel = await make_channel(company.tenant_id, department_id=department_id)

    await post_webhook(channel, [text_message("quero comprar")])

    rows = await fetch(
        "SELECT status, assignee, department FROM conversations WHERE tenant = {}",
        company.tenant_id,
    )
    assert rows == [{"status": "ACTIVE", "assignee": agent.user_id, "department": department_id}]


async def test_one_phone_rule_for_the_api_and_webhooks(
    client, make_company, make_channel, post_webhook
):
    """A contact typed in the old 8-digit form and the same person writing through
    WhatsApp (whose id lacks the ninth digit) are one contact."""
    from tests.conftest import login

    company = await make_company()
    channel = await make_channel(company.tenant_id)
    resp = await client.post(
        "/api/v1/contacts",
        json={"name": "Ana", "phone": "+55 31 8888-7777"},
        headers=await login(client, company.owner),
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["phone"] == "+5531988887777"

    resp = await post_webhook(channel, [text_message("oi", phone="553188887777")])
    assert resp.status == 200

    contacts = await fetch("SELECT id, phone FROM contacts WHERE tenant = {}", company.tenant_id)
    assert [(str(c["id"]), c["phone"]) for c in contacts] == [(created["id"], "+5531988887777")]


async def test_adapters_know_their_public_webhook_url(
    make_client, fake_plugin, make_company, make_channel
):
    """A provider that must be told where to post (Telegram's setWebhook, Evolution's
    webhook/set) learns it from `ChannelInfo`, not from its operator."""
    from guiche.plugin import load_channel

    http = await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin),), public_url="https://chat.example.com/"
    )
    company = await make_company()
    channel = await make_channel(company.tenant_id)

    loaded = await load_channel(http.server.app[SERVICES], channel.id)

    assert loaded.adapter.channel.public_url == "https://chat.example.com"
    assert loaded.adapter.channel.webhook_url == (
        f"https://chat.example.com/webhooks/fake/{channel.id}"
    )
