"""The public read API for reports (`guiche.conversations.timeline`, re-exported by
`guiche.plugin`) and `enabled_contexts`, on conversations served through the real app."""

from __future__ import annotations

from typing import Any

from guiche.plugin import (
    INBOUND,
    OUTBOUND,
    closed_conversations,
    conversation_timeline,
    conversation_timelines,
    enabled_contexts,
    queue_snapshot,
    reference_names,
)
from tests.core.outbound.conftest import send_text, services_of_client, settle
from tests.core.routing.helpers import add_department, sql


async def test_timeline_of_a_served_conversation(client: Any, start_chat: Any) -> None:
    chat = await start_chat()
    tenant = chat.company.tenant_id
    owner = chat.company.owner.user_id
    base = f"/api/v1/conversations/{chat.conversation_id}"
    assert (await client.post(f"{base}/accept", headers=chat.headers)).status == 200
    assert (await send_text(client, chat)).status in (200, 201, 202)
    tab = (
        await sql("INSERT INTO tabulations (tenant, name) VALUES ({}, 'Ok') RETURNING id", tenant)
    )[0]["id"]
    resp = await client.post(
        f"{base}/close", json={"tabulation_id": str(tab)}, headers=chat.headers
    )
    assert resp.status == 200
    await settle(client)
    services = services_of_client(client)

    timeline = await conversation_timeline(services, tenant, chat.conversation_id)
    assert timeline is not None
    assert timeline.status == "CLOSED" and timeline.tabulation_id == tab
    assert timeline.channel_type == "fake" and timeline.assignee_id == owner
    kinds = [s.kind for s in timeline.steps]
    assert kinds == ["opened", INBOUND, "accepted", OUTBOUND, "closed"] or kinds == [
        INBOUND,
        "opened",
        "accepted",
        OUTBOUND,
        "closed",
    ]
    steps = {s.kind: s for s in timeline.steps}
    assert steps[OUTBOUND].agent_id == owner
    assert steps["accepted"].agent_id == owner and steps["accepted"].status == "ACTIVE"
    assert steps["closed"].tabulation_id == tab
    assert [s.at for s in timeline.steps] == sorted(s.at for s in timeline.steps)

    # closing order, with a keyset cursor
    closed = await closed_conversations(services, tenant)
    assert [cid for cid, _ in closed] == [chat.conversation_id]
    assert await closed_conversations(services, tenant, after=(closed[0][1], closed[0][0])) == []

    names = await reference_names(services, tenant)
    assert names["agent"][owner] == "Owner" and names["tabulation"][tab] == "Ok"
    assert names["channel"][chat.channel.id]


async def test_reads_are_scoped_to_the_tenant(
    client: Any, start_chat: Any, make_company: Any
) -> None:
    chat = await start_chat()
    services = services_of_client(client)
    stranger = await make_company()
    assert await conversation_timeline(services, stranger.tenant_id, chat.conversation_id) is None
    assert await conversation_timelines(services, stranger.tenant_id, [chat.conversation_id]) == []
    assert (await queue_snapshot(services, stranger.tenant_id)).departments == ()
    assert (await reference_names(services, stranger.tenant_id))["channel"] == {}


async def test_queue_snapshot_counts_the_waiting_and_the_seats(
    client: Any, start_chat: Any, make_company: Any
) -> None:
    company = await make_company()
    dept = await add_department(company.tenant_id)
    await start_chat(company=company, department_id=dept)
    snapshot = await queue_snapshot(services_of_client(client), company.tenant_id)
    [waiting] = snapshot.departments
    assert waiting.department_id == dept and waiting.waiting == 1
    assert waiting.oldest_queued_at is not None
    [seat] = snapshot.agents
    assert seat.user_id == company.owner.user_id and seat.open_conversations == 0


async def test_enabled_contexts_lists_companies_that_enabled_the_plugin(
    client: Any,
    make_company: Any,
    make_channel: Any,
) -> None:
    services = services_of_client(client)
    on, off = await make_company(), await make_company()
    await make_channel(on.tenant_id)  # enables the fake channel plugin for `on`
    await make_channel(off.tenant_id, enable=False)
    tenants = {ctx.tenant_id: ctx for ctx in await enabled_contexts(services, "fakechannel")}
    assert on.tenant_id in tenants and off.tenant_id not in tenants
    assert tenants[on.tenant_id].plugin == "fakechannel"
