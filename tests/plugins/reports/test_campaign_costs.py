"""Cost per campaign: the campaigns plugin tags its sends (`origin` `campaign:<id>`), core
carries the tag onto the usage rows its status webhooks' pricing blocks create, and the
reports plugin totals them per campaign — the provider's price where given, else the
company's rate table. Other companies' campaigns never show; messages sent outside a
campaign belong to none."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from guiche.channels import DeliveryStatus, Pricing, StatusUpdate
from guiche.plugin import send_message
from tests.core.routing.helpers import sql
from tests.plugins.campaigns.conftest import (  # noqa: F401 - fixtures, used by name
    Shop,
    client,
    csv_of,
    fake_plugin,
    ledger_rows,
    make_channel,
    make_shop,
    post_webhook,
    services_of_client,
    settle,
)

from .conftest import API, enable_reports

RATES = {"55": {"MARKETING": 0.0625}}


def _priced(provider_id: str, category: str, cost: float | None) -> StatusUpdate:
    return StatusUpdate(
        provider_message_id=provider_id,
        status=DeliveryStatus.SENT,
        timestamp=dt.datetime.now(dt.UTC),
        pricing=Pricing(
            billable=True, pricing_model="PMP", category=category, cost=cost, currency="USD"
        ),
    )


async def _provider_ids(message_ids: list[uuid.UUID]) -> list[str]:
    rows = await sql("SELECT id, provider_message_id FROM messages WHERE id = ANY({})", message_ids)
    by_id = {r["id"]: r["provider_message_id"] for r in rows}
    return [by_id[m] for m in message_ids]


async def _campaign(app: Any, shop: Shop, count: int, start: int) -> tuple[str, list[str]]:
    """A finished campaign to `count - start` people; the provider ids of its messages."""
    campaign = await shop.create(app)
    await shop.csv(app, campaign["id"], csv_of(count, start))
    await shop.act(app, campaign["id"], "start")
    await settle(app)
    rows = sorted(await ledger_rows(campaign["id"]), key=lambda r: r["phone"])
    return campaign["id"], await _provider_ids([r["message_id"] for r in rows])


async def _costs(app: Any, shop: Shop, **params: str) -> dict[str, dict[str, Any]]:
    resp = await app.get(
        f"{API}/costs", params={"last_hours": "24", **params}, headers=shop.headers
    )
    assert resp.status == 200, await resp.text()
    return {i["key"]: i for i in (await resp.json())["items"]}


async def test_a_campaigns_sends_are_its_cost_and_nothing_else_is(
    client,  # noqa: F811 - the imported fixtures, requested by name
    make_shop,  # noqa: F811
    post_webhook,  # noqa: F811
):
    shop = await make_shop()
    await enable_reports(client, shop.headers, rates=RATES)
    black_friday, (priced, rated) = await _campaign(client, shop, 2, 0)
    natal, [natal_sent] = await _campaign(client, shop, 3, 2)
    # A message another plugin sends (no origin), priced like the campaigns' ones
    outside = await send_message(
        services_of_client(client),
        shop.company.tenant_id,
        channel_id=shop.channel.id,
        message={"type": "text", "text": "Seu pedido saiu"},
        idempotency_key="bot:1",
        phone="(11) 97777-0000",
    )
    await settle(client)
    [outside_sent] = await _provider_ids([outside.message_id])
    statuses = [
        _priced(priced, "utility", 0.01),  # the provider's price
        _priced(rated, "marketing", None),  # priced from the rate table (+55)
        _priced(natal_sent, "marketing", None),
        _priced(outside_sent, "marketing", 0.5),
    ]
    assert (await post_webhook(shop.channel, statuses=statuses)).status == 200

    other = await make_shop()  # another company, its own campaign priced the same way
    await enable_reports(client, other.headers, rates=RATES)
    theirs, [their_sent] = await _campaign(client, other, 1, 0)
    assert (
        await post_webhook(other.channel, statuses=[_priced(their_sent, "marketing", 9.0)])
    ).status == 200
    await settle(client)

    by_campaign = await _costs(client, shop, by="campaign")
    assert set(by_campaign) == {black_friday, natal}  # not the bot's, not theirs
    assert abs(by_campaign[black_friday]["cost"] - 0.0725) < 1e-9
    assert (by_campaign[black_friday]["messages"], by_campaign[black_friday]["unpriced"]) == (2, 0)
    assert by_campaign[natal]["cost"] == 0.0625 and by_campaign[natal]["messages"] == 1
    assert by_campaign[natal]["currency"] == "USD"

    one = await _costs(client, shop, by="category", campaign_id=black_friday)
    assert {k: v["cost"] for k, v in one.items()} == {"utility": 0.01, "marketing": 0.0625}
    everything = await _costs(client, shop, by="category")
    assert everything["marketing"]["messages"] == 3  # the bot's message: counted, no campaign
    assert abs(everything["marketing"]["cost"] - 0.625) < 1e-9

    resp = await client.get(
        f"{API}/costs.csv",
        params={"last_hours": "24", "by": "campaign", "delimiter": ";", "bom": "true"},
        headers=shop.headers,
    )
    assert resp.status == 200 and resp.content_type == "text/csv"
    text = (await resp.read()).decode()
    assert text.startswith("\ufeffcampaign_id;currency;messages;billable;cost;unpriced\r\n")
    assert f"{natal};USD;1;1;0,062500;0\r\n" in text
    assert f"{black_friday};USD;2;2;0,072500;0\r\n" in text and text.count("\r\n") == 3

    assert set(await _costs(client, other, by="campaign")) == {theirs}
    assert await _costs(client, other, by="campaign", campaign_id=black_friday) == {}

    # The campaigns plugin's own report reads the same usage rows (the provider's prices)
    report = await shop.get(client, f"campaigns/{black_friday}/report")
    [cost] = report["cost"]
    assert (cost["billable_messages"], cost["amount"]) == (2, 0.01)
    assert cost["categories"] == ["marketing", "utility"]
    [cost] = (await shop.get(client, f"campaigns/{natal}/report"))["cost"]
    assert (cost["billable_messages"], cost["amount"]) == (1, None)  # no rates there


async def test_a_campaign_id_must_be_a_uuid(client, make_shop):  # noqa: F811
    shop = await make_shop()
    await enable_reports(client, shop.headers)
    resp = await client.get(
        f"{API}/costs", params={"campaign_id": "campaign:1"}, headers=shop.headers
    )
    assert resp.status == 422
