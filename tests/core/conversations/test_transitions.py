"""Conversation moves through the API (accept, assign, transfer, close, reopen) and the
auto-close task: legal from-states, visibility, caps, audit, events and plugin hooks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from guiche.channels import ConversationEvent
from guiche.conversations.tasks import auto_close
from guiche.plugin import PluginInfo, hookimpl
from guiche.runtime.services import SERVICES
from guiche.testing import FakeChannelPlugin
from tests.core.routing.helpers import (
    add_agent,
    add_department,
    conversation_row,
    insert_conversation,
    set_presence,
    sql,
)

from .conftest import fetch


class ConversationRecorder:
    """A plugin that keeps every conversation event it is given."""

    name = "convrecorder"

    def __init__(self) -> None:
        self.events: list[ConversationEvent] = []

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, version="1.0", description="records conversation events")

    @hookimpl
    async def guiche_on_conversation_event(self, ctx: Any, event: ConversationEvent) -> None:
        self.events.append(event)


@pytest.fixture
def recorder() -> ConversationRecorder:
    return ConversationRecorder()


@pytest.fixture
async def client(
    make_client: Any, fake_plugin: FakeChannelPlugin, recorder: ConversationRecorder
) -> Any:
    return await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin), (recorder.name, recorder))
    )


class Scene:
    """A company with a department, a channel and a tabulation; the test adds people."""

    def __init__(self, company: Any, dept: uuid.UUID, channel: Any, tabulation: uuid.UUID):
        self.company = company
        self.tenant_id = company.tenant_id
        self.dept = dept
        self.channel = channel
        self.tabulation = tabulation

    async def conversation(self, **kwargs: Any) -> uuid.UUID:
        kwargs.setdefault("department_id", self.dept)
        return await insert_conversation(self.tenant_id, self.channel.id, **kwargs)


@pytest.fixture
async def scene(make_company: Any, make_channel: Any) -> Scene:
    company = await make_company()
    dept = await add_department(company.tenant_id)
    channel = await make_channel(company.tenant_id, department_id=dept)
    rows = await sql(
        "INSERT INTO tabulations (tenant, name) VALUES ({}, 'Resolvido') RETURNING id",
        company.tenant_id,
    )
    await sql(
        "INSERT INTO tenant_plugins (tenant, plugin, enabled) VALUES ({}, 'convrecorder', true)",
        company.tenant_id,
    )
    return Scene(company, dept, channel, rows[0]["id"])


async def _post(client: Any, headers: dict[str, str], cid: uuid.UUID, move: str, **body: Any):
    resp = await client.post(f"/api/v1/conversations/{cid}/{move}", json=body, headers=headers)
    return resp.status, await resp.json()


async def _updates(conversation_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT assignee, department, data FROM events WHERE conversation = {}"
        " AND type = 'conversation.updated' ORDER BY seq",
        conversation_id,
    )


async def _audits(conversation_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT actor, action, data FROM audit_log WHERE target_id = {} ORDER BY id",
        conversation_id,
    )


# --- accept -------------------------------------------------------------------------------


async def test_accept_takes_a_queued_conversation(client, scene, auth_headers, recorder):
    agent = await add_agent(scene.company, (scene.dept,), status="away")
    cid = await scene.conversation()

    status, body = await _post(client, await auth_headers(agent), cid, "accept")

    assert status == 200, body
    assert body["status"] == "ACTIVE"
    assert body["assignee"]["id"] == str(agent.user_id)
    assert body["assigned_at"] is not None and body["queued_at"] is None
    (event,) = await _updates(cid)
    assert event["data"]["action"] == "accepted"
    assert event["assignee"] == agent.user_id
    assert event["data"]["actor_id"] == str(agent.user_id)
    assert [(a["action"], a["actor"]) for a in await _audits(cid)] == [
        ("conversation.accept", agent.user_id)
    ]
    await client.server.app[SERVICES].wait_background()
    assert [(e.action, e.conversation_id, e.assignee_id) for e in recorder.events] == [
        ("accepted", cid, agent.user_id)
    ]
    seat = await sql(
        'SELECT last_assigned_at FROM memberships WHERE tenant = {} AND "user" = {}',
        scene.tenant_id,
        agent.user_id,
    )
    assert seat[0]["last_assigned_at"] is not None


async def test_accept_refuses_beyond_the_cap_even_when_racing(client, scene, auth_headers):
    agent = await add_agent(scene.company, (scene.dept,), status="away", max_chats=1)
    headers = await auth_headers(agent)
    first, second = await scene.conversation(), await scene.conversation()

    results = await asyncio.gather(
        _post(client, headers, first, "accept"), _post(client, headers, second, "accept")
    )

    assert sorted(status for status, _ in results) == [200, 409]
    refused = next(body for status, body in results if status == 409)
    assert refused["error"]["code"] == "at_capacity"
    assert refused["error"]["details"]["max_concurrent_chats"] == 1
    rows = await sql("SELECT count(*) AS n FROM conversations WHERE assignee = {}", agent.user_id)
    assert rows[0]["n"] == 1


async def test_accept_conflicts_and_invisible_conversations(client, scene, auth_headers):
    agent = await add_agent(scene.company, (scene.dept,), status="away")
    colleague = await add_agent(scene.company, (scene.dept,), status="away")
    supervisor = await add_agent(scene.company, (scene.dept,), role="supervisor", status="away")
    other_dept = await add_department(scene.tenant_id)
    headers = await auth_headers(agent)

    taken = await scene.conversation(assignee_id=colleague.user_id, status="ACTIVE")
    status, body = await _post(client, await auth_headers(supervisor), taken, "accept")
    assert (status, body["error"]["code"]) == (409, "already_assigned")
    status, _ = await _post(client, headers, taken, "accept")
    assert status == 404  # an agent cannot even see a colleague's conversation

    bot = await scene.conversation(status="BOT")
    status, body = await _post(client, headers, bot, "accept")
    assert (status, body["error"]["code"]) == (409, "invalid_transition")
    assert body["error"]["details"] == {
        "action": "accept",
        "status": "BOT",
        "allowed_from": ["PENDING"],
    }

    elsewhere = await scene.conversation(department_id=other_dept)
    status, _ = await _post(client, headers, elsewhere, "accept")
    assert status == 404
    status, _ = await _post(client, headers, uuid.uuid4(), "accept")
    assert status == 404
    assert await _updates(elsewhere) == []


# --- assign -------------------------------------------------------------------------------


async def test_assign_may_exceed_the_cap_and_frees_the_previous_agent(client, scene, auth_headers):
    supervisor = await add_agent(scene.company, (scene.dept,), role="supervisor", status="away")
    previous = await add_agent(scene.company, (scene.dept,), max_chats=1)
    target = await add_agent(scene.company, (scene.dept,), max_chats=0, status="away")
    cid = await scene.conversation(assignee_id=previous.user_id, status="ACTIVE")
    waiting = await scene.conversation()  # queued because `previous` is full

    status, body = await _post(
        client, await auth_headers(supervisor), cid, "assign", user_id=str(target.user_id)
    )

    assert status == 200, body
    assert body["assignee"]["id"] == str(target.user_id)
    (event,) = await _updates(cid)
    assert event["data"]["action"] == "assigned"
    assert event["data"]["previous_assignee_id"] == str(previous.user_id)
    # the freed slot drained the queue into the previous agent's hands
    assert (await conversation_row(waiting))["assignee"] == previous.user_id


async def test_assign_target_must_be_an_active_member(client, scene, auth_headers, make_company):
    headers = await auth_headers(scene.company.owner)
    cid = await scene.conversation()
    outsider = await add_agent(await make_company())
    gone = await add_agent(scene.company, (scene.dept,))
    await sql('UPDATE memberships SET is_active = false WHERE "user" = {}', gone.user_id)
    viewer = await scene.company.add("viewer")

    for user in (outsider, gone):
        status, body = await _post(client, headers, cid, "assign", user_id=str(user.user_id))
        assert (status, body["error"]["message"]) == (404, "user not found")
    status, body = await _post(client, headers, cid, "assign", user_id=str(viewer.user_id))
    assert (status, body["error"]["code"]) == (422, "not_an_agent")
    status, _ = await _post(client, headers, cid, "assign")
    assert status == 422
    agent = await add_agent(scene.company, (scene.dept,))
    status, body = await _post(
        client, await auth_headers(agent), cid, "assign", user_id=str(agent.user_id)
    )
    assert (status, body["error"]["code"]) == (403, "permission_denied")
    assert (await conversation_row(cid))["assignee"] is None


# --- transfer -----------------------------------------------------------------------------


async def test_transfer_to_a_department_requeues_auto_assigns_and_keeps_the_note(
    client, scene, auth_headers, recorder
):
    agent = await add_agent(scene.company, (scene.dept,), max_chats=1)
    billing = await add_department(scene.tenant_id, "Financeiro")
    biller = await add_agent(scene.company, (billing,))
    cid = await scene.conversation(assignee_id=agent.user_id, status="ACTIVE")
    waiting = await scene.conversation()

    status, body = await _post(
        client,
        await auth_headers(agent),
        cid,
        "transfer",
        department_id=str(billing),
        note="Cliente quer segunda via do boleto",
    )

    assert status == 200, body
    assert body["department"]["id"] == str(billing)
    assert (body["status"], body["assignee"]["id"]) == ("ACTIVE", str(biller.user_id))
    transferred, auto = await _updates(cid)
    assert transferred["data"]["action"] == "transferred"
    assert transferred["data"]["note"] == "Cliente quer segunda via do boleto"
    assert transferred["data"]["from_assignee_id"] == str(agent.user_id)
    assert (transferred["department"], transferred["assignee"]) == (billing, None)
    assert (auto["data"]["action"], auto["assignee"]) == ("assigned", biller.user_id)
    notes = await fetch("SELECT author, body FROM notes WHERE conversation = {}", cid)
    assert notes == [{"author": agent.user_id, "body": "Cliente quer segunda via do boleto"}]
    assert [a["action"] for a in await _audits(cid)] == [
        "conversation.transfer",
        "conversation.auto_assigned",
    ]
    # the agent's freed slot went to the conversation waiting in their department
    assert (await conversation_row(waiting))["assignee"] == agent.user_id
    await client.server.app[SERVICES].wait_background()
    actions = [e.action for e in recorder.events if e.conversation_id == cid]
    assert sorted(actions) == ["assigned", "transferred"]


async def test_transfer_to_a_person_respects_their_cap(client, scene, auth_headers):
    agent = await add_agent(scene.company, (scene.dept,))
    full = await add_agent(scene.company, (scene.dept,), max_chats=0)
    free = await add_agent(scene.company, (scene.dept,), status="offline")
    cid = await scene.conversation(assignee_id=agent.user_id, status="ACTIVE")
    headers = await auth_headers(agent)

    status, body = await _post(client, headers, cid, "transfer", user_id=str(full.user_id))
    assert (status, body["error"]["code"]) == (409, "at_capacity")
    status, body = await _post(client, headers, cid, "transfer", user_id=str(free.user_id))
    assert status == 200, body
    assert body["assignee"]["id"] == str(free.user_id)
    assert (await _updates(cid))[0]["data"]["to_user_id"] == str(free.user_id)
    assert await fetch("SELECT id FROM notes WHERE conversation = {}", cid) == []

    # now it is someone else's: the agent no longer sees it
    status, _ = await _post(client, headers, cid, "transfer", user_id=str(agent.user_id))
    assert status == 404


async def test_transfer_needs_exactly_one_target_and_an_open_conversation(
    client, scene, auth_headers
):
    headers = await auth_headers(scene.company.owner)
    agent = await add_agent(scene.company, (scene.dept,), status="offline")
    cid = await scene.conversation()

    status, _ = await _post(client, headers, cid, "transfer", note="sem destino")
    assert status == 422
    status, _ = await _post(
        client, headers, cid, "transfer", user_id=str(agent.user_id), department_id=str(scene.dept)
    )
    assert status == 422
    status, body = await _post(client, headers, cid, "transfer", department_id=str(uuid.uuid4()))
    assert (status, body["error"]["message"]) == (404, "department not found")
    status, body = await _post(client, headers, cid, "transfer", department_id=str(scene.dept))
    assert (status, body["error"]["code"]) == (409, "already_queued")
    closed = await scene.conversation(status="CLOSED")
    status, body = await _post(client, headers, closed, "transfer", user_id=str(agent.user_id))
    assert (status, body["error"]["code"]) == (409, "invalid_transition")


# --- close and reopen ---------------------------------------------------------------------


async def test_close_requires_an_active_tabulation_of_the_company(
    client, scene, auth_headers, make_company
):
    agent = await add_agent(scene.company, (scene.dept,))
    cid = await scene.conversation(assignee_id=agent.user_id, status="ACTIVE")
    headers = await auth_headers(agent)
    other = await make_company()
    foreign = await sql(
        "INSERT INTO tabulations (tenant, name) VALUES ({}, 'Outro') RETURNING id",
        other.tenant_id,
    )
    retired = await sql(
        "INSERT INTO tabulations (tenant, name, is_active) VALUES ({}, 'Antigo', false)"
        " RETURNING id",
        scene.tenant_id,
    )

    status, body = await _post(client, headers, cid, "close")
    assert status == 422
    assert body["error"]["details"][0]["field"] == "tabulation_id"
    status, body = await _post(client, headers, cid, "close", tabulation_id=str(foreign[0]["id"]))
    assert (status, body["error"]["message"]) == (404, "tabulation not found")
    status, body = await _post(client, headers, cid, "close", tabulation_id=str(retired[0]["id"]))
    assert (status, body["error"]["code"]) == (422, "inactive_tabulation")
    assert (await conversation_row(cid))["status"] == "ACTIVE"


async def test_close_frees_the_slot_for_the_queue(client, scene, auth_headers, recorder):
    agent = await add_agent(scene.company, (scene.dept,), max_chats=1)
    cid = await scene.conversation(assignee_id=agent.user_id, status="ACTIVE")
    waiting = await scene.conversation()
    headers = await auth_headers(agent)

    status, body = await _post(client, headers, cid, "close", tabulation_id=str(scene.tabulation))

    assert status == 200, body
    assert body["status"] == "CLOSED"
    assert body["tabulation"] == {"id": str(scene.tabulation), "name": "Resolvido"}
    assert body["closed_at"] is not None
    (event,) = await _updates(cid)
    assert event["data"]["action"] == "closed"
    assert event["data"]["tabulation_id"] == str(scene.tabulation)
    assert (await _audits(cid))[0]["data"] == {"tabulation_id": str(scene.tabulation)}
    assert (await conversation_row(waiting))["assignee"] == agent.user_id

    status, body = await _post(client, headers, cid, "close", tabulation_id=str(scene.tabulation))
    assert (status, body["error"]["code"]) == (409, "invalid_transition")
    await client.server.app[SERVICES].wait_background()
    assert "closed" in [e.action for e in recorder.events if e.conversation_id == cid]


async def test_reopen_queues_again_and_auto_assigns(client, scene, auth_headers):
    agent = await add_agent(scene.company, (scene.dept,))
    cid = await scene.conversation(assignee_id=agent.user_id, status="CLOSED")
    await sql(
        "UPDATE conversations SET tabulation = {}, closed_at = now() WHERE id = {}",
        scene.tabulation,
        cid,
    )
    other = await add_agent(scene.company, (scene.dept,), status="offline")
    status, _ = await _post(client, await auth_headers(other), cid, "reopen")
    assert status == 404  # a closed conversation of a colleague is not theirs to see

    status, body = await _post(client, await auth_headers(agent), cid, "reopen")

    assert status == 200, body
    assert (body["status"], body["assignee"]["id"]) == ("ACTIVE", str(agent.user_id))
    assert body["tabulation"] is None and body["closed_at"] is None
    reopened, assigned = await _updates(cid)
    assert (reopened["data"]["action"], reopened["data"]["status"]) == ("reopened", "PENDING")
    assert assigned["data"]["action"] == "assigned"
    status, body = await _post(client, await auth_headers(agent), cid, "reopen")
    assert (status, body["error"]["code"]) == (409, "invalid_transition")


async def test_reopen_refused_while_the_contact_has_another_open_conversation(
    client, scene, auth_headers
):
    headers = await auth_headers(scene.company.owner)
    old = await scene.conversation(status="CLOSED")
    contact = (await conversation_row(old))["contact"]
    current = await sql(
        "INSERT INTO conversations (tenant, contact, channel) VALUES ({}, {}, {}) RETURNING id",
        scene.tenant_id,
        contact,
        scene.channel.id,
    )

    status, body = await _post(client, headers, old, "reopen")

    assert (status, body["error"]["code"]) == (409, "conversation_already_open")
    assert body["error"]["details"] == {"conversation_id": str(current[0]["id"])}
    assert (await conversation_row(old))["status"] == "CLOSED"


# --- auto-close ---------------------------------------------------------------------------


async def _silent_for(conversation_id: uuid.UUID, hours: float) -> None:
    await sql(
        "UPDATE conversations SET opened_at = now() - make_interval(hours => {}),"
        " last_inbound_at = now() - make_interval(hours => {}) WHERE id = {}",
        hours + 1,
        hours,
        conversation_id,
    )


async def test_auto_close_expires_by_each_companys_setting(
    client, scene, make_company, make_channel, recorder
):
    await sql(
        "UPDATE tenants SET settings = {}::jsonb WHERE id = {}",
        '{"auto_close_hours": 2}',
        scene.tenant_id,
    )
    agent = await add_agent(scene.company, (scene.dept,), max_chats=1)
    stale = await scene.conversation(assignee_id=agent.user_id, status="ACTIVE")
    colleague = await add_agent(scene.company, (scene.dept,), status="offline")
    fresh = await scene.conversation(assignee_id=colleague.user_id, status="ACTIVE")
    never_answered = await scene.conversation(status="BOT")
    waiting = await scene.conversation()
    await _silent_for(stale, 3)
    await _silent_for(fresh, 1)
    await _silent_for(waiting, 1)
    await sql(
        "UPDATE conversations SET opened_at = now() - interval '5 hours' WHERE id = {}",
        never_answered,
    )
    await set_presence(scene.tenant_id, agent.user_id, "online")
    other = await make_company()  # default: 24 hours
    other_channel = await make_channel(other.tenant_id)
    theirs = await insert_conversation(other.tenant_id, other_channel.id)
    await _silent_for(theirs, 3)

    await auto_close(client.server.app[SERVICES])

    statuses = {
        cid: (await conversation_row(cid))["status"]
        for cid in (stale, fresh, never_answered, theirs)
    }
    assert statuses == {
        stale: "CLOSED",
        fresh: "ACTIVE",
        never_answered: "CLOSED",
        theirs: "PENDING",
    }
    row = await conversation_row(stale)
    assert row["closed_at"] is not None and row["tabulation"] is None
    (event,) = await _updates(stale)
    assert event["data"]["action"] == "expired"
    assert event["data"]["actor_id"] is None
    assert event["data"]["auto_close_hours"] == 2
    audit = await _audits(stale)
    assert [(a["action"], a["actor"], a["data"]) for a in audit] == [
        ("conversation.expire", None, {"idle_hours": 2})
    ]
    # the expired conversation's slot went to the queue
    assert (await conversation_row(waiting))["assignee"] == agent.user_id
    await client.server.app[SERVICES].wait_background()
    assert "expired" in [e.action for e in recorder.events if e.conversation_id == stale]

    await auto_close(client.server.app[SERVICES])  # idempotent: nothing more to do
    assert len(await _updates(stale)) == 1


async def test_a_reopened_conversation_is_not_expired_at_once(client, scene, auth_headers):
    await sql(
        "UPDATE tenants SET settings = {}::jsonb WHERE id = {}",
        '{"auto_close_hours": 1}',
        scene.tenant_id,
    )
    cid = await scene.conversation(status="CLOSED")
    await _silent_for(cid, 30)

    status, _ = await _post(client, await auth_headers(scene.company.owner), cid, "reopen")
    assert status == 200
    await auto_close(client.server.app[SERVICES])

    assert (await conversation_row(cid))["status"] == "PENDING"
