"""Commands over the socket: join/leave, typing, presence, and sending a message."""

from __future__ import annotations

import uuid

from ..conversations.conftest import fetch, text_message
from .conftest import connect, make_department, set_online


async def _assigned_conversation(client, company, post_webhook, make_channel, agent, *others):
    """A conversation in a fresh department, auto-assigned to `agent` (who goes online)."""
    department = await make_department(company.tenant_id, agent, *others)
    await set_online(agent)
    channel = await make_channel(company.tenant_id, department_id=department)
    await post_webhook(channel, [text_message("oi")])
    rows = await fetch("SELECT id, assignee FROM conversations WHERE channel = {}", channel.id)
    assert rows[0]["assignee"] == agent.user_id
    return rows[0]["id"], department


async def test_join_and_leave_only_visible_conversations(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    agent = await company.add("agent")
    stranger = await company.add("agent")
    conversation_id, _ = await _assigned_conversation(
        client, company, post_webhook, make_channel, agent
    )
    await make_department(company.tenant_id, stranger)
    outsider = await make_company()
    mine = await connect(client, agent)
    theirs = await connect(client, stranger)
    foreign = await connect(client, outsider.owner)

    joined = await mine.command("conversation.join", conversation_id=str(conversation_id))
    hidden = await theirs.command("conversation.join", conversation_id=str(conversation_id))
    other_tenant = await foreign.command("conversation.join", conversation_id=str(conversation_id))
    unknown = await mine.command("conversation.join", conversation_id=str(uuid.uuid4()))
    left = await mine.command("conversation.leave", conversation_id=str(conversation_id))

    assert joined == {
        "type": "ack",
        "id": joined["id"],
        "ok": True,
        "conversation_id": str(conversation_id),
    }
    for refused in (hidden, other_tenant, unknown):
        assert refused["type"] == "error"
        assert refused["error"]["code"] == "conversation_not_found"
    assert left["ok"] is True


async def test_typing_reaches_joined_sockets_that_can_see_it_and_is_not_stored(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    agent = await company.add("agent")
    supervisor = await company.add("supervisor")
    conversation_id, _ = await _assigned_conversation(
        client, company, post_webhook, make_channel, agent, supervisor
    )
    admin = await company.add("admin")
    typist = await connect(client, agent)
    lead = await connect(client, supervisor)
    bystander = await connect(client, admin)  # may see it, but has not opened it
    await lead.command("conversation.join", conversation_id=str(conversation_id))
    events_before = await fetch(
        "SELECT count(*) AS n FROM events WHERE tenant = {}", company.tenant_id
    )

    ack = await typist.command("typing", conversation_id=str(conversation_id))

    assert ack["ok"] and ack["delivered"] == 1
    typing = await lead.next("typing")
    assert typing == {
        "type": "typing",
        "conversation_id": str(conversation_id),
        "user_id": str(agent.user_id),
    }
    assert not [f for f in await bystander.drain() if f["type"] == "typing"]
    await lead.command("conversation.leave", conversation_id=str(conversation_id))
    assert (await typist.command("typing", conversation_id=str(conversation_id)))["delivered"] == 0
    events_after = await fetch(
        "SELECT count(*) AS n FROM events WHERE tenant = {}", company.tenant_id
    )
    assert events_after == events_before


async def test_a_viewer_cannot_type(client, make_company):
    company = await make_company()
    viewer = await company.add("viewer")
    socket = await connect(client, viewer)

    answer = await socket.command("typing", conversation_id=str(uuid.uuid4()))

    assert answer["error"]["code"] == "permission_denied"


async def test_joined_socket_learns_when_a_transfer_takes_the_conversation_away(
    client, make_company, make_channel, post_webhook, auth_headers
):
    company = await make_company()
    agent = await company.add("agent")
    colleague = await company.add("agent")
    conversation_id, _ = await _assigned_conversation(
        client, company, post_webhook, make_channel, agent, colleague
    )
    socket = await connect(client, agent)
    await socket.command("conversation.join", conversation_id=str(conversation_id))

    resp = await client.post(
        f"/api/v1/conversations/{conversation_id}/transfer",
        json={"user_id": str(colleague.user_id)},
        headers=await auth_headers(company.owner),
    )

    assert resp.status == 200, await resp.text()
    left = await socket.next("conversation.left")
    assert left == {
        "type": "conversation.left",
        "conversation_id": str(conversation_id),
        "reason": "access_lost",
    }
    seen = await socket.drain()
    assert not [f for f in seen if f["type"] == "conversation.updated"]  # no details leak
    typing = await socket.command("typing", conversation_id=str(conversation_id))
    assert typing["error"]["code"] == "conversation_not_found"


async def test_presence_online_drains_the_queue_and_tells_the_company(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    agent = await company.add("agent")
    department = await make_department(company.tenant_id, agent)
    channel = await make_channel(company.tenant_id, department_id=department)
    admin = await connect(client, await company.add("admin"))
    socket = await connect(client, agent)
    await post_webhook(channel, [text_message("tem alguém aí?")])  # nobody online: queued
    opened = await socket.next("conversation.updated", action="opened")
    assert opened["data"]["status"] == "PENDING"

    ack = await socket.command("presence", status="online")

    assert ack["ok"] and ack["changed"] is True and ack["assigned"] == 1
    assigned = await socket.next("conversation.updated", action="assigned")
    assert assigned["conversation_id"] == opened["conversation_id"]
    assert assigned["data"]["assignee_id"] == str(agent.user_id)
    status = await admin.next("operator.status")
    assert status["data"]["user_id"] == str(agent.user_id)
    assert status["data"]["status"] == "online"
    assert status["data"]["previous_status"] == "offline"
    rows = await fetch(
        'SELECT status, status_changed_at FROM memberships WHERE tenant = {} AND "user" = {}',
        company.tenant_id,
        agent.user_id,
    )
    assert rows[0]["status"] == "online"
    again = await socket.command("presence", status="online")
    assert again["changed"] is False
    away = await socket.command("presence", status="away")
    assert away["changed"] is True and away["assigned"] == 0
    bad = await socket.command("presence", status="busy")
    assert bad["error"]["code"] == "validation_error"


async def test_message_send_uses_the_outbound_service(
    client, make_company, make_channel, post_webhook, fake_plugin
):
    company = await make_company()
    agent = await company.add("agent")
    conversation_id, _ = await _assigned_conversation(
        client, company, post_webhook, make_channel, agent
    )
    admin = await connect(client, await company.add("admin"))
    socket = await connect(client, agent)

    ack = await socket.command(
        "message.send",
        conversation_id=str(conversation_id),
        text="Olá! Já verifico.",
        idempotency_key="ws-1",
    )
    replay = await socket.command(
        "message.send",
        conversation_id=str(conversation_id),
        text="Olá! Já verifico.",
        idempotency_key="ws-1",
    )
    template = await socket.command(
        "message.send",
        conversation_id=str(conversation_id),
        message={"type": "text", "text": "Segunda mensagem"},
    )

    assert ack["ok"] and ack["replayed"] is False
    message = ack["message"]
    assert message["direction"] == "out" and message["body"] == "Olá! Já verifico."
    assert replay["replayed"] is True and replay["message"]["id"] == message["id"]
    assert template["message"]["body"] == "Segunda mensagem"
    new = await admin.next("message.new", id=message["id"])
    assert new["data"]["direction"] == "out"
    sent = await fake_plugin.provider.wait_sent(2)
    assert [m.text for m in sent] == ["Olá! Já verifico.", "Segunda mensagem"]
    stored = await fetch(
        "SELECT count(*) AS n FROM messages WHERE conversation = {} AND direction = 'out'",
        conversation_id,
    )
    assert stored[0]["n"] == 2


async def test_message_send_errors_come_back_as_error_frames(client, make_company):
    company = await make_company()
    agent = await company.add("agent")
    viewer = await company.add("viewer")
    socket = await connect(client, agent)
    read_only = await connect(client, viewer)
    nowhere = str(uuid.uuid4())

    both = await socket.command(
        "message.send", conversation_id=nowhere, text="a", message={"type": "text", "text": "b"}
    )
    empty = await socket.command("message.send", conversation_id=nowhere, text="")
    missing = await socket.command("message.send", conversation_id=nowhere, text="oi")
    denied = await read_only.command("message.send", conversation_id=nowhere, text="oi")

    assert both["error"]["code"] == "validation_error"
    assert empty["error"]["code"] == "validation_error"
    assert missing["error"]["code"] == "not_found"
    assert denied["error"]["code"] == "permission_denied"
