"""Provider cost from `provider_usage`: the provider's prices, the company's per-country
rates for what it left unpriced, free usage at 0; the dashboard's Cloud API cost."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import login
from tests.core.routing.helpers import new_phone, sql

from .conftest import API, enable_reports


async def usage(
    tenant_id: uuid.UUID,
    channel_id: uuid.UUID,
    phone: str,
    category: str,
    *,
    billable: bool,
    cost: float | None,
) -> None:
    contact = await sql(
        "INSERT INTO contacts (tenant, phone, name) VALUES ({}, {}, 'C') RETURNING id",
        tenant_id,
        phone,
    )
    message = await sql(
        "INSERT INTO messages (id, tenant, contact, channel, direction, body, status)"
        " VALUES (gen_random_uuid(), {}, {}, {}, 'out', 'x', 'sent') RETURNING id",
        tenant_id,
        contact[0]["id"],
        channel_id,
    )
    await sql(
        "INSERT INTO provider_usage (tenant, channel, message_id, provider_message_id,"
        " pricing_model, category, billable, cost, currency)"
        " VALUES ({}, {}, {}, {}, 'PMP', {}, {}, {}, 'USD')",
        tenant_id,
        channel_id,
        message[0]["id"],
        f"wamid.{uuid.uuid4().hex}",
        category,
        billable,
        cost,
    )


async def test_costs_price_what_the_provider_left_unpriced(client: Any, make_company: Any) -> None:
    company = await make_company()
    headers = await login(client, company.owner)
    await enable_reports(client, headers, rates={"55": {"MARKETING": 0.0625}})
    rows = await sql(
        "INSERT INTO channels (tenant, type, name) VALUES ({}, 'meta_cloud', 'Cloud') RETURNING id",
        company.tenant_id,
    )
    channel = rows[0]["id"]
    await usage(company.tenant_id, channel, "+" + new_phone(), "utility", billable=True, cost=0.01)
    await usage(
        company.tenant_id, channel, "+" + new_phone(), "MARKETING", billable=True, cost=None
    )
    await usage(company.tenant_id, channel, "+" + new_phone(), "service", billable=False, cost=None)
    await usage(company.tenant_id, channel, "+12025550123", "marketing", billable=True, cost=None)

    resp = await client.get(
        f"{API}/costs", params={"last_hours": "24", "by": "category"}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    items = {i["key"]: i for i in (await resp.json())["items"]}
    assert items["utility"]["cost"] == 0.01 and items["utility"]["unpriced"] == 0
    assert items["marketing"]["cost"] == 0.0625  # the Brazilian one, from the rate table
    assert items["marketing"]["unpriced"] == 1  # the US number: no rate, not guessed
    assert items["marketing"]["messages"] == 2 and items["marketing"]["billable"] == 2
    assert items["service"]["cost"] == 0 and items["service"]["billable"] == 0

    resp = await client.get(f"{API}/dashboard", headers=headers)
    [cloud] = (await resp.json())["cloud_api_cost_24h"]
    assert cloud["currency"] == "USD" and abs(cloud["cost"] - 0.0725) < 1e-9
    assert cloud["messages"] == 4 and cloud["unpriced"] == 1

    agent = await company.add("agent")
    agent_headers = await login(client, agent)
    assert (await client.get(f"{API}/costs", headers=agent_headers)).status == 403
    board = await (await client.get(f"{API}/dashboard", headers=agent_headers)).json()
    assert board["cloud_api_cost_24h"] is None

    other = await make_company()
    other_headers = await login(client, other.owner)
    await enable_reports(client, other_headers)
    resp = await client.get(f"{API}/costs", params={"last_hours": "24"}, headers=other_headers)
    assert (await resp.json())["items"] == []


async def test_rate_table_is_validated(client: Any, make_company: Any) -> None:
    company = await make_company()
    headers = await login(client, company.owner)
    resp = await client.put(
        "/api/v1/plugins/reports",
        json={"enabled": True, "settings": {"rates": {"+55": {"marketing": 1}}}},
        headers=headers,
    )
    assert resp.status == 422
    resp = await client.put(
        "/api/v1/plugins/reports",
        json={"enabled": True, "settings": {"timezone": "Mars/Olympus"}},
        headers=headers,
    )
    assert resp.status == 422
