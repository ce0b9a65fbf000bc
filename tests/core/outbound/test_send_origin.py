"""`send_message(..., origin=...)`: a plugin's tag on what it sends reaches the provider's
usage rows for that message, whichever way the priced status arrives (after our commit,
parked before it, or on an echo merged into our message), and `usage_totals` totals and
filters by it. Messages sent without a tag stay untagged."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from guiche.channels import (
    DeliveryStatus,
    OutboundMessage,
    Pricing,
    StatusUpdate,
)
from guiche.foundation.errors import ApiError
from guiche.plugin import DirectSent, send_message, usage_totals

from .conftest import (
    echo_of,
    fetch,
    message_row,
    send_text,
    services_of_client,
    settle,
)

HELLO = {"type": "text", "text": "Oferta da semana!"}
ORIGIN = "campaign:0b9a4a52-6d0e-4c59-9d1f-3f6c2a1e0c11"


def _priced(provider_id: str, cost: float | None = 0.0625) -> StatusUpdate:
    return StatusUpdate(
        provider_message_id=provider_id,
        status=DeliveryStatus.SENT,
        timestamp=dt.datetime.now(dt.UTC),
        pricing=Pricing(
            billable=True, pricing_model="PMP", category="marketing", cost=cost, currency="USD"
        ),
    )


async def _send(client: Any, tenant: uuid.UUID, channel: uuid.UUID, **kw: Any) -> DirectSent:
    kw.setdefault("message", HELLO)
    kw.setdefault("idempotency_key", f"test:{uuid.uuid4()}")
    if "contact_id" not in kw:
        kw.setdefault("phone", "(11) 91234-5678")
    return await send_message(services_of_client(client), tenant, channel_id=channel, **kw)


async def _usage_origins(tenant_id: uuid.UUID) -> dict[uuid.UUID, str | None]:
    rows = await fetch("SELECT message_id, origin FROM provider_usage WHERE tenant = {}", tenant_id)
    return {r["message_id"]: r["origin"] for r in rows}


async def _contact_of(conversation_id: uuid.UUID) -> uuid.UUID:
    [row] = await fetch("SELECT contact FROM conversations WHERE id = {}", conversation_id)
    return row["contact"]


async def _send_tagged(client: Any, chat: Any) -> DirectSent:
    """A send tagged with ORIGIN into the started chat's conversation."""
    contact_id = await _contact_of(chat.conversation_id)
    return await _send(
        client, chat.company.tenant_id, chat.channel.id, contact_id=contact_id, origin=ORIGIN
    )


async def test_the_origin_reaches_usage_and_totals_group_and_filter_by_it(
    client, company, make_company, make_channel, post_webhook
):
    channel = await make_channel(company.tenant_id)
    tagged = await _send(client, company.tenant_id, channel.id, origin=ORIGIN)
    plain = await _send(client, company.tenant_id, channel.id, phone="(11) 91234-5679")
    await settle(client)
    assert (await message_row(tagged.message_id))["origin"] == ORIGIN
    assert (await message_row(plain.message_id))["origin"] is None

    statuses = [
        _priced((await message_row(sent.message_id))["provider_message_id"])
        for sent in (tagged, plain)
    ]
    assert (await post_webhook(channel, statuses=statuses)).status == 200
    await settle(client)
    assert await _usage_origins(company.tenant_id) == {
        tagged.message_id: ORIGIN,
        plain.message_id: None,
    }

    services = services_of_client(client)
    now = dt.datetime.now(dt.UTC)
    since, until = now - dt.timedelta(hours=1), now + dt.timedelta(hours=1)
    everything = await usage_totals(services, company.tenant_id, since, until)
    assert sorted((t.origin, t.count, t.cost) for t in everything) == [
        ("", 1, 0.0625),
        (ORIGIN, 1, 0.0625),
    ]
    [one] = await usage_totals(services, company.tenant_id, since, until, origin=ORIGIN)
    assert (one.origin, one.count, one.priced, one.cost) == (ORIGIN, 1, 1, 0.0625)
    [prefixed] = await usage_totals(
        services, company.tenant_id, since, until, origin_prefix="campaign:"
    )
    assert prefixed == one
    assert await usage_totals(services, company.tenant_id, since, until, origin="campaign:x") == []
    other = await make_company()  # the same tag means nothing in another company
    assert await usage_totals(services, other.tenant_id, since, until, origin=ORIGIN) == []


@pytest.mark.parametrize("origin", ["", "x" * 201])
async def test_an_origin_must_be_1_to_200_characters(client, company, make_channel, origin):
    channel = await make_channel(company.tenant_id)
    with pytest.raises(ApiError) as caught:
        await _send(client, company.tenant_id, channel.id, origin=origin)
    assert (caught.value.status, caught.value.code) == (422, "validation_error")


async def test_a_priced_status_parked_before_our_commit_carries_the_origin(
    client, start_chat, fake_plugin, post_webhook
):
    chat = await start_chat()

    async def provider_prices_first(message: OutboundMessage, provider_id: str) -> None:
        await post_webhook(chat.channel, statuses=[_priced(provider_id)])

    fake_plugin.provider.on_send = provider_prices_first
    sent = await _send_tagged(client, chat)
    await settle(client)
    assert not await fetch("SELECT 1 FROM early_statuses WHERE channel = {}", chat.channel.id)
    assert await _usage_origins(chat.company.tenant_id) == {sent.message_id: ORIGIN}


async def test_usage_recorded_on_an_echo_takes_our_origin_when_merged(
    client, start_chat, fake_plugin, post_webhook
):
    chat = await start_chat()

    async def provider_echoes_and_prices_first(message: OutboundMessage, provider_id: str) -> None:
        await post_webhook(chat.channel, [echo_of(message, provider_id)])
        await post_webhook(chat.channel, statuses=[_priced(provider_id)])  # names the echo

    fake_plugin.provider.on_send = provider_echoes_and_prices_first
    sent = await _send_tagged(client, chat)
    await settle(client)
    assert await _usage_origins(chat.company.tenant_id) == {sent.message_id: ORIGIN}

    # an agent's send in the same conversation is nobody's campaign
    fake_plugin.provider.on_send = None
    created = await (await send_text(client, chat)).json()
    await settle(client)
    provider_id = (await message_row(created["id"]))["provider_message_id"]
    assert (await post_webhook(chat.channel, statuses=[_priced(provider_id)])).status == 200
    origins = await _usage_origins(chat.company.tenant_id)
    assert origins[uuid.UUID(created["id"])] is None
