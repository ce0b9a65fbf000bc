"""The read helpers `guiche.plugin` gives plugins instead of SQL on core's tables:
`find_contacts`, `channel_facts`, `message_usage` and `log_position`, each within one
company only."""

from __future__ import annotations

import datetime as dt
import uuid

from guiche.plugin import (
    channel_facts,
    find_contacts,
    log_position,
    message_usage,
    publish_event,
)
from guiche.runtime.services import SERVICES

from .conftest import fetch, text_message


async def test_people_are_found_by_id_search_and_department_in_their_company_only(
    client, make_company, make_channel, post_webhook
):
    services = client.app[SERVICES]
    mine, theirs = await make_company(), await make_company()
    channel = await make_channel(mine.tenant_id)
    other_channel = await make_channel(theirs.tenant_id)
    await post_webhook(channel, [text_message("oi", phone="5511987650001", name="Ana Lima")])
    await post_webhook(channel, [text_message("oi", phone="5511987650002", name="Bruno")])
    await post_webhook(other_channel, [text_message("oi", phone="5511987650003", name="Ana X")])
    everyone = await find_contacts(services, mine.tenant_id)
    assert [c.name for c in everyone] == ["Ana Lima", "Bruno"]
    assert [c.phone for c in await find_contacts(services, mine.tenant_id, search="Ana")] == [
        "+5511987650001"
    ]
    stranger = (await find_contacts(services, theirs.tenant_id))[0]
    by_id = await find_contacts(services, mine.tenant_id, ids=[everyone[1].id, stranger.id])
    assert [c.id for c in by_id] == [everyone[1].id]  # another company's id finds nothing
    department = uuid.uuid4()  # no conversation there
    assert await find_contacts(services, mine.tenant_id, department_id=department) == []


async def test_channel_facts_and_usage_stay_in_their_company(
    client, make_company, make_channel, post_webhook
):
    services = client.app[SERVICES]
    mine, theirs = await make_company(), await make_company()
    channel = await make_channel(mine.tenant_id)
    facts = await channel_facts(services, mine.tenant_id, channel.id)
    assert facts is not None and facts.type == "fake" and facts.active
    assert facts.created_at <= dt.datetime.now(dt.UTC)
    assert await channel_facts(services, theirs.tenant_id, channel.id) is None

    await post_webhook(channel, [text_message("oi", provider_id="wamid.usage.1")])
    [message] = await fetch("SELECT id FROM messages WHERE tenant = {}", mine.tenant_id)
    await fetch(
        "INSERT INTO provider_usage (tenant, channel, message_id, provider_message_id,"
        " category, billable, cost, currency) VALUES ({}, {}, {}, 'wamid.usage.1',"
        " 'MARKETING', true, 0.0625, 'USD') RETURNING id",
        mine.tenant_id,
        channel.id,
        message["id"],
    )
    [usage] = await message_usage(services, mine.tenant_id, [message["id"]])
    assert (usage.category, usage.billable, usage.cost, usage.currency) == (
        "marketing",
        True,
        0.0625,
        "USD",
    )
    assert await message_usage(services, theirs.tenant_id, [message["id"]]) == []


async def test_log_position_starts_a_reader_at_the_end_or_replays_from_a_time(
    client, make_company
):
    services = client.app[SERVICES]
    company = await make_company()
    assert await log_position(services, company.tenant_id) == 0
    first = await publish_event(services, company.tenant_id, "test.one", {})
    second = await publish_event(services, company.tenant_id, "test.two", {})
    assert await log_position(services, company.tenant_id) == second.seq
    replay = await log_position(services, company.tenant_id, since=first.created_at)
    assert replay == first.seq - 1
    later = second.created_at + dt.timedelta(seconds=1)
    assert await log_position(services, company.tenant_id, since=later) == second.seq


async def test_imported_notes_are_added_once_and_only_on_the_companys_own_rows(
    client, make_company, make_channel, post_webhook
):
    import pytest

    from guiche.plugin import ImportedNote, add_notes

    services = client.app[SERVICES]
    mine, theirs = await make_company(), await make_company()
    for company in (mine, theirs):
        channel = await make_channel(company.tenant_id)
        await post_webhook(channel, [text_message("oi", phone="5511987650009")])
    [own] = await fetch("SELECT id, contact FROM conversations WHERE tenant = {}", mine.tenant_id)
    [other] = await fetch("SELECT id FROM conversations WHERE tenant = {}", theirs.tenant_id)
    at = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
    notes = [
        ImportedNote("x:1", "cliente VIP", at, "Bia (X)", conversation_id=own["id"]),
        ImportedNote("x:2", "prefere tarde", at, None, contact_id=own["contact"]),
        ImportedNote("x:3", "not mine", at, "Eve", conversation_id=other["id"]),
    ]
    assert await add_notes(services, mine.tenant_id, notes) == 2
    assert await add_notes(services, mine.tenant_id, notes) == 0  # keyed: nothing twice
    stored = await fetch(
        "SELECT body, author_name, created_at FROM notes WHERE tenant = {} ORDER BY body",
        mine.tenant_id,
    )
    assert [(n["body"], n["author_name"]) for n in stored] == [
        ("cliente VIP", "Bia (X)"), ("prefere tarde", None)
    ]
    assert stored[0]["created_at"] == at  # when it was written there
    assert await fetch("SELECT id FROM notes WHERE tenant = {}", theirs.tenant_id) == []
    with pytest.raises(ValueError, match="exactly one"):
        ImportedNote("x:4", "both", at, conversation_id=own["id"], contact_id=own["contact"])
