"""guiche.plugin.send_message: a plugin's send goes through core's outbox, once per key."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from guiche.foundation.errors import ApiError
from guiche.plugin import DirectSent, send_message
from guiche.runtime.cache import runtime_cache

from .conftest import fetch, message_row, services_of_client, settle

WINDOW_FAKE = pytest.mark.parametrize("fake_plugin", [{"window_24h": True}], indirect=True)
HELLO = {"type": "text", "text": "Oferta da semana!"}
TEMPLATE = {"type": "template", "template": {"name": "oferta", "language": "pt_BR"}}


async def _send(client: Any, tenant: uuid.UUID, channel: uuid.UUID, **kw: Any) -> DirectSent:
    kw.setdefault("message", HELLO)
    kw.setdefault("idempotency_key", f"test:{uuid.uuid4()}")
    if "contact_id" not in kw:
        kw.setdefault("phone", "(11) 91234-5678")
    return await send_message(services_of_client(client), tenant, channel_id=channel, **kw)


async def _error(coro: Any, status: int, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        await coro
    assert (caught.value.status, caught.value.code) == (status, code)


async def test_a_phone_gets_a_contact_a_closed_conversation_and_one_send(
    client, company, make_channel, fake_plugin
):
    channel = await make_channel(company.tenant_id)
    seen: list[DirectSent] = []

    async def after_store(sent: DirectSent) -> None:
        assert not fake_plugin.provider.sent  # recorded before the send is enqueued
        seen.append(sent)

    sent = await _send(
        client, company.tenant_id, channel.id, idempotency_key="k1", after_store=after_store
    )
    await settle(client)
    assert seen == [sent] and not sent.replayed and sent.status == "pending"
    [out] = fake_plugin.provider.sent
    assert (out.to.phone, out.text) == ("+5511912345678", HELLO["text"])
    assert (await message_row(sent.message_id))["status"] == "sent"
    [conversation] = await fetch("SELECT * FROM conversations WHERE id = {}", sent.conversation_id)
    assert conversation["status"] == "CLOSED"  # no work for agents
    assert conversation["contact"] == sent.contact_id

    again = await _send(client, company.tenant_id, channel.id, idempotency_key="k1")
    await settle(client)
    assert again.replayed and again.message_id == sent.message_id
    assert again.status == "sent"  # the message's current status
    assert len(fake_plugin.provider.sent) == 1

    other = await _send(client, company.tenant_id, channel.id, contact_id=sent.contact_id)
    await settle(client)
    assert other.conversation_id == sent.conversation_id  # the contact's conversation reused
    assert len(fake_plugin.provider.sent) == 2


async def test_a_reused_key_with_another_message_is_refused(client, company, make_channel):
    channel = await make_channel(company.tenant_id)
    await _send(client, company.tenant_id, channel.id, idempotency_key="same")
    await _error(
        _send(
            client,
            company.tenant_id,
            channel.id,
            idempotency_key="same",
            message={"type": "text", "text": "outra"},
        ),
        422,
        "idempotency_key_reused",
    )


@WINDOW_FAKE
async def test_the_24_hour_rule_holds_for_cold_contacts(client, company, make_channel, fake_plugin):
    channel = await make_channel(company.tenant_id)
    await _error(_send(client, company.tenant_id, channel.id), 422, "outside_customer_care_window")
    sent = await _send(client, company.tenant_id, channel.id, message=TEMPLATE)
    await settle(client)
    [out] = fake_plugin.provider.sent
    assert out.kind == "template" and out.template.name == "oferta"
    assert (await message_row(sent.message_id))["status"] == "sent"


async def test_opted_out_contacts_other_tenants_and_bad_input_are_refused(
    client, company, make_company, make_channel, fake_plugin
):
    channel = await make_channel(company.tenant_id)
    sent = await _send(client, company.tenant_id, channel.id)
    await fetch("UPDATE contacts SET opted_out = true WHERE id = {}", sent.contact_id)
    await _error(
        _send(client, company.tenant_id, channel.id, contact_id=sent.contact_id),
        409,
        "contact_opted_out",
    )
    other = await make_company()
    await _error(_send(client, other.tenant_id, channel.id), 422, "validation_error")
    await _error(
        _send(client, other.tenant_id, channel.id, contact_id=sent.contact_id),
        422,
        "validation_error",
    )
    await _error(_send(client, company.tenant_id, channel.id, phone="12"), 422, "invalid_phone")
    await _error(
        _send(client, company.tenant_id, channel.id, message={"type": "fax"}),
        422,
        "validation_error",
    )
    await settle(client)
    assert len(fake_plugin.provider.sent) == 1


async def test_a_send_never_waits_for_a_second_connection_while_holding_one(
    client, company, make_channel
):
    """Each `send_message` holds at most one pooled connection at a time: a campaign
    driver runs dozens at once, and when the company's settings fell out of the cache,
    every one of them held a connection while asking the pool for another (the region
    to read the phone in). With the pool full of such callers nothing ever returned:
    a worker hung with every connection idle. Here all but one connection are taken."""
    services = services_of_client(client)
    channel = await make_channel(company.tenant_id)
    pool = services.db.pool
    assert pool is not None
    runtime_cache(services).clear()  # the company's settings must be loaded again
    held = [await pool.acquire() for _ in range(services.settings.db_pool_max - 1)]
    try:
        async with asyncio.timeout(30):  # a liveness guard: the deadlock never ends
            sent = await _send(client, company.tenant_id, channel.id, idempotency_key="one")
            runtime_cache(services).clear()
            again = await _send(client, company.tenant_id, channel.id, idempotency_key="one")
    finally:
        for conn in held:
            await pool.release(conn)
    await settle(client)
    assert again.replayed and again.message_id == sent.message_id
