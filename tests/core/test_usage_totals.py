"""`guiche.plugin.usage_totals`: a company's provider usage grouped for cost reports."""

from __future__ import annotations

import datetime as dt
from typing import Any

from guiche.plugin import usage_totals
from guiche.runtime.services import SERVICES
from tests.core.routing.helpers import sql


async def _usage(tenant: Any, channel: Any, phone: str, category: str, cost: Any) -> None:
    contact = await sql(
        "INSERT INTO contacts (tenant, phone, name) VALUES ({}, {}, 'C') RETURNING id",
        tenant,
        phone,
    )
    message = await sql(
        "INSERT INTO messages (id, tenant, contact, channel, direction, body, status)"
        " VALUES (gen_random_uuid(), {}, {}, {}, 'out', 'x', 'sent') RETURNING id",
        tenant,
        contact[0]["id"],
        channel,
    )
    await sql(
        "INSERT INTO provider_usage (tenant, channel, message_id, category, billable, cost)"
        " VALUES ({}, {}, {}, {}, true, {})",
        tenant,
        channel,
        message[0]["id"],
        category,
        cost,
    )


async def test_usage_totals_group_and_stay_within_the_tenant(
    client: Any, make_company: Any
) -> None:
    services = client.server.app[SERVICES]
    mine, theirs = await make_company(), await make_company()
    channels = {}
    for company in (mine, theirs):
        rows = await sql(
            "INSERT INTO channels (tenant, type, name) VALUES ({}, 'meta_cloud', 'C') RETURNING id",
            company.tenant_id,
        )
        channels[company.tenant_id] = rows[0]["id"]
    await _usage(mine.tenant_id, channels[mine.tenant_id], "+5511912345001", "MARKETING", 0.5)
    await _usage(mine.tenant_id, channels[mine.tenant_id], "+5511912345002", "marketing", None)
    await _usage(theirs.tenant_id, channels[theirs.tenant_id], "+5511912345003", "utility", 1)
    now = dt.datetime.now(dt.UTC)
    [total] = await usage_totals(
        services, mine.tenant_id, now - dt.timedelta(hours=1), now + dt.timedelta(hours=1)
    )
    assert (total.category, total.channel_type, total.phone_prefix) == (
        "marketing",
        "meta_cloud",
        "551",
    )
    assert (total.count, total.priced, total.cost) == (2, 1, 0.5)
    assert total.channel_id == channels[mine.tenant_id]
    assert await usage_totals(services, mine.tenant_id, now, now) == []
