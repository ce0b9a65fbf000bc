"""Draining queues: when an agent comes online, from the periodic task, and past a
department whose agents are all busy."""

from __future__ import annotations

from guiche.conversations.tasks import drain_queues
from guiche.routing.service import drain_queue
from guiche.runtime.services import SERVICES

from ..conversations.conftest import fetch
from .helpers import add_agent, add_department, conversation_row, insert_conversation, set_presence


async def test_going_online_assigns_the_waiting_queue(
    client, make_company, make_channel, auth_headers
):
    company = await make_company()
    dept = await add_department(company.tenant_id)
    agent = await add_agent(company, (dept,), status="offline", max_chats=2)
    channel = await make_channel(company.tenant_id, department_id=dept)
    waiting = [
        await insert_conversation(company.tenant_id, channel.id, department_id=dept)
        for _ in range(3)
    ]

    resp = await client.put(
        f"/api/v1/users/{agent.user_id}/status",
        json={"status": "online"},
        headers=await auth_headers(agent),
    )

    assert resp.status == 200, await resp.text()
    rows = [await conversation_row(cid) for cid in waiting]
    # oldest first, up to the agent's cap of 2
    assert [r["assignee"] for r in rows] == [agent.user_id, agent.user_id, None]
    assert [r["status"] for r in rows] == ["ACTIVE", "ACTIVE", "PENDING"]
    events = await fetch(
        "SELECT data FROM events WHERE tenant = {} AND type = 'operator.status'",
        company.tenant_id,
    )
    assert [e["data"]["status"] for e in events] == ["online"]
    assert events[0]["data"]["user_id"] == str(agent.user_id)
    assert events[0]["data"]["previous_status"] == "offline"


async def test_going_away_publishes_presence_and_assigns_nothing(
    client, make_company, make_channel, auth_headers
):
    company = await make_company()
    dept = await add_department(company.tenant_id)
    agent = await add_agent(company, (dept,), status="online")
    channel = await make_channel(company.tenant_id, department_id=dept)
    queued = await insert_conversation(company.tenant_id, channel.id, department_id=dept)

    resp = await client.put(
        f"/api/v1/users/{agent.user_id}/status",
        json={"status": "away"},
        headers=await auth_headers(agent),
    )

    assert resp.status == 200
    assert (await conversation_row(queued))["assignee"] is None
    events = await fetch(
        "SELECT data FROM events WHERE tenant = {} AND type = 'operator.status'",
        company.tenant_id,
    )
    assert [e["data"]["status"] for e in events] == ["away"]


async def test_periodic_drain_assigns_what_routing_missed(client, make_company, make_channel):
    """A crash between an ingest's commit and its routing leaves PENDING rows behind."""
    company = await make_company()
    dept = await add_department(company.tenant_id)
    agent = await add_agent(company, (dept,), status="offline")
    channel = await make_channel(company.tenant_id, department_id=dept)
    queued = await insert_conversation(company.tenant_id, channel.id, department_id=dept)
    loose = await insert_conversation(company.tenant_id, channel.id)
    await set_presence(company.tenant_id, agent.user_id, "online")  # no drain on this path

    assigned = await drain_queues(client.server.app[SERVICES])

    assert assigned >= 2  # other companies' leftovers in this database may drain too
    for conversation_id in (queued, loose):
        row = await conversation_row(conversation_id)
        assert (row["status"], row["assignee"]) == ("ACTIVE", agent.user_id)
    audits = await fetch(
        "SELECT count(*) AS n FROM audit_log WHERE tenant = {}"
        " AND action = 'conversation.auto_assigned'",
        company.tenant_id,
    )
    assert audits[0]["n"] == 2


async def test_a_full_department_does_not_hide_the_next_ones_queue(
    client, make_company, make_channel
):
    company = await make_company()
    busy, idle = await add_department(company.tenant_id), await add_department(company.tenant_id)
    await add_agent(company, (busy,), max_chats=0)
    helper = await add_agent(company, (idle,))
    channel = await make_channel(company.tenant_id)
    for _ in range(3):  # older, and nobody can take them
        await insert_conversation(company.tenant_id, channel.id, department_id=busy)
    waiting = await insert_conversation(company.tenant_id, channel.id, department_id=idle)

    assigned = await drain_queue(client.server.app[SERVICES], company.tenant_id, limit=1)

    assert assigned == 1
    assert (await conversation_row(waiting))["assignee"] == helper.user_id


async def test_core_tasks_are_registered_and_run_through_the_queue(
    client, make_company, make_channel
):
    services = client.server.app[SERVICES]
    assert {"core.auto_close", "core.drain_queues"} <= set(services.tasks.names)
    company = await make_company()
    agent = await add_agent(company, status="offline")
    channel = await make_channel(company.tenant_id)
    queued = await insert_conversation(company.tenant_id, channel.id)
    await set_presence(company.tenant_id, agent.user_id, "online")

    task = await services.tasks.kick("core.drain_queues")
    result = await task.wait_result(timeout=30)

    assert not result.is_err, result.error
    assert (await conversation_row(queued))["assignee"] == agent.user_id
