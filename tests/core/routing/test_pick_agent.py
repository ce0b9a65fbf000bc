"""`pick_agent`: the online department member idle longest, under their cap."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from guiche.routing.assign import pick_agent
from guiche.runtime.services import SERVICES

from .helpers import add_agent, add_department, insert_conversation, sql

NOW = dt.datetime.now(dt.UTC)


async def _pick(client: Any, tenant_id: uuid.UUID, department_id: uuid.UUID | None) -> Any:
    services = client.server.app[SERVICES]
    async with services.db.transaction() as transaction:
        picked = await pick_agent(transaction.connection, tenant_id, department_id)
    return picked[1] if picked else None


async def _last_assigned(tenant_id: uuid.UUID, user_id: uuid.UUID, at: dt.datetime) -> None:
    await sql(
        'UPDATE memberships SET last_assigned_at = {} WHERE tenant = {} AND "user" = {}',
        at,
        tenant_id,
        user_id,
    )


async def test_never_assigned_first_then_idle_longest(client, make_company):
    company = await make_company()
    dept = await add_department(company.tenant_id)
    recent = await add_agent(company, (dept,))
    oldest = await add_agent(company, (dept,))
    fresh = await add_agent(company, (dept,))
    await _last_assigned(company.tenant_id, recent.user_id, NOW - dt.timedelta(minutes=1))
    await _last_assigned(company.tenant_id, oldest.user_id, NOW - dt.timedelta(hours=2))

    assert await _pick(client, company.tenant_id, dept) == fresh.user_id
    await _last_assigned(company.tenant_id, fresh.user_id, NOW)
    assert await _pick(client, company.tenant_id, dept) == oldest.user_id


async def test_agent_at_cap_is_skipped(client, make_company, make_channel):
    company = await make_company()
    dept = await add_department(company.tenant_id)
    channel = await make_channel(company.tenant_id)
    busy = await add_agent(company, (dept,), max_chats=2)
    other = await add_agent(company, (dept,), max_chats=2)
    await _last_assigned(company.tenant_id, busy.user_id, NOW - dt.timedelta(hours=5))
    await _last_assigned(company.tenant_id, other.user_id, NOW)
    for _ in range(2):
        await insert_conversation(
            company.tenant_id,
            channel.id,
            department_id=dept,
            assignee_id=busy.user_id,
            status="ACTIVE",
        )
    # closed conversations do not count against the cap
    await insert_conversation(
        company.tenant_id, channel.id, assignee_id=other.user_id, status="CLOSED"
    )

    assert await _pick(client, company.tenant_id, dept) == other.user_id
    await sql(
        "UPDATE memberships SET max_concurrent_chats = 0 WHERE tenant = {}", company.tenant_id
    )
    assert await _pick(client, company.tenant_id, dept) is None


async def test_offline_away_inactive_and_viewers_are_skipped(client, make_company):
    company = await make_company()
    dept = await add_department(company.tenant_id)
    await add_agent(company, (dept,), status="offline")
    await add_agent(company, (dept,), status="away")
    await add_agent(company, (dept,), role="viewer")
    inactive = await add_agent(company, (dept,))
    await sql(
        'UPDATE memberships SET is_active = false WHERE tenant = {} AND "user" = {}',
        company.tenant_id,
        inactive.user_id,
    )
    assert await _pick(client, company.tenant_id, dept) is None

    online = await add_agent(company, (dept,))
    assert await _pick(client, company.tenant_id, dept) == online.user_id


async def test_members_of_other_departments_are_skipped(client, make_company):
    company = await make_company()
    sales, support = (
        await add_department(company.tenant_id),
        await add_department(company.tenant_id),
    )
    await add_agent(company, (support,))
    await add_agent(company)  # in no department at all
    assert await _pick(client, company.tenant_id, sales) is None

    seller = await add_agent(company, (sales, support))
    assert await _pick(client, company.tenant_id, sales) == seller.user_id


async def test_no_department_means_any_online_member(client, make_company):
    company = await make_company()
    dept = await add_department(company.tenant_id)
    await add_agent(company, (dept,), status="offline")
    loose = await add_agent(company)
    assert await _pick(client, company.tenant_id, None) == loose.user_id

    await _last_assigned(company.tenant_id, loose.user_id, NOW)
    member = await add_agent(company, (dept,))
    assert await _pick(client, company.tenant_id, None) == member.user_id


async def test_other_companies_agents_are_never_picked(client, make_company):
    company, other = await make_company(), await make_company()
    dept = await add_department(company.tenant_id)
    outsider = await add_agent(other)
    await sql(
        'INSERT INTO department_members (tenant, department, "user") VALUES ({}, {}, {})',
        company.tenant_id,
        dept,
        outsider.user_id,
    )
    assert await _pick(client, company.tenant_id, dept) is None
    assert await _pick(client, company.tenant_id, None) is None
