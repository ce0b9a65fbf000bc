"""Fan-out: each event reaches exactly the sockets allowed to see it, and a socket that
falls behind is dropped without holding anyone else up."""

from __future__ import annotations

import datetime as dt
import socket as stdsocket
import uuid

from guiche.realtime.events import CHANNEL_STATE, BusEvent
from guiche.runtime.services import SERVICES
from guiche.websocket.hub import CLOSE_TOO_SLOW, HUB

from ..conversations.conftest import fetch, text_message
from .conftest import connect, make_department, open_socket, post_to, set_online, token_of


async def test_message_reaches_assignee_and_admin_but_not_other_departments_or_tenants(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    assignee = await company.add("agent")
    colleague = await company.add("agent")  # same department, not assigned
    stranger = await company.add("agent")  # another department
    admin = await company.add("admin")
    sales = await make_department(company.tenant_id, assignee, colleague)
    await make_department(company.tenant_id, stranger)
    await set_online(assignee)
    channel = await make_channel(company.tenant_id, department_id=sales)
    other = await make_company()
    other_channel = await make_channel(other.tenant_id)
    members = {
        "assignee": assignee,
        "colleague": colleague,
        "stranger": stranger,
        "admin": admin,
        "other_owner": other.owner,
    }
    sockets = {name: await connect(client, member) for name, member in members.items()}
    assert (await post_webhook(channel, [text_message("oi")])).status == 200
    assigned = await sockets["assignee"].next("conversation.updated", action="assigned")
    await post_webhook(other_channel, [text_message("outra empresa")])

    await post_webhook(channel, [text_message("cadê meu pedido?")])

    for name in ("assignee", "admin"):
        frame = await sockets[name].next("message.new", body="cadê meu pedido?")
        assert frame["conversation_id"] == assigned["conversation_id"]
        assert frame["data"]["direction"] == "in" and frame["seq"] > 0
    # the colleague saw the conversation while it was queued in their department, not after
    colleague_saw = [f for f in await sockets["colleague"].drain() if f["type"] == "message.new"]
    assert [f["data"]["body"] for f in colleague_saw] == ["oi"]
    assert not [f for f in await sockets["stranger"].drain() if "seq" in f]
    other_saw = [f for f in await sockets["other_owner"].drain() if f["type"] == "message.new"]
    assert [f["data"]["body"] for f in other_saw] == ["outra empresa"]


async def test_company_wide_events_reach_every_socket_of_that_company_only(client, make_company):
    company = await make_company()
    agent = await company.add("agent")
    await make_department(company.tenant_id, agent)
    watcher = await connect(client, agent)
    outsider = await connect(client, (await make_company()).owner)
    event = BusEvent(
        seq=1,
        created_at=dt.datetime.now(dt.UTC),
        tenant_id=company.tenant_id,
        type=CHANNEL_STATE,
        data={"channel_id": str(uuid.uuid4()), "state": "disconnected"},
    )

    await client.app[SERVICES].bus.publish([event])

    assert (await watcher.next(CHANNEL_STATE))["data"]["state"] == "disconnected"
    assert not [f for f in await outsider.drain() if f["type"] == CHANNEL_STATE]


async def test_per_tenant_connection_cap(make_client, fake_plugin, make_company):
    client = await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin),), ws_max_connections_per_tenant=2
    )
    company = await make_company()
    token = await token_of(client, company.owner)
    first = await open_socket(client, token)
    await open_socket(client, token)

    over = await client.ws_connect(f"/ws?token={token}")
    await over.receive(timeout=10)
    elsewhere = await connect(client, (await make_company()).owner)  # the cap is per company

    assert over.close_code == 4429
    assert elsewhere.ready["role"] == "owner"
    await first.ws.close()
    assert (await open_socket(client, token)).ready["role"] == "owner"


async def test_slow_socket_is_dropped_and_others_get_every_event(
    make_client, fake_plugin, make_company, make_channel, monkeypatch
):
    """A client that stops reading fills its TCP buffers, then its queue: it is dropped
    (4408) while a reading socket of the same company receives every event in order."""
    monkeypatch.setattr("guiche.websocket.hub.CLOSE_TIMEOUT_SECONDS", 0.5)
    client = await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin),), ws_send_queue_size=4
    )
    company = await make_company()
    admin = await company.add("admin")
    channel = await make_channel(company.tenant_id)
    reader = await connect(client, admin)
    slow = await connect(client, company.owner)
    hub = client.app[HUB]
    (server_side,) = hub.user_connections(company.tenant_id, company.owner.user_id)
    server_side.transport.get_extra_info("socket").setsockopt(
        stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, 4096
    )
    slow_transport = slow.ws._writer.transport  # the client's own TCP transport
    slow_transport.get_extra_info("socket").setsockopt(
        stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, 4096
    )
    slow_transport.pause_reading()
    big = "x" * 65_536

    for n in range(40):
        await post_to(client, channel, text_message(f"{n} {big}"))
        await reader.next("message.new")
        if server_side.closing:
            break
    await post_to(client, channel, text_message("depois"))
    await reader.next("message.new", body="depois")

    assert server_side.close_code == CLOSE_TOO_SLOW
    assert hub.count(company.tenant_id) == 1
    metrics = await (await client.get("/metrics")).text()
    assert "guiche_ws_dropped_slow_total 1.0" in metrics
    assert "guiche_ws_connections 1.0" in metrics
    logged = await fetch("SELECT seq FROM events WHERE tenant = {} ORDER BY seq", company.tenant_id)
    assert [f["seq"] for f in reader.seen if "seq" in f] == [row["seq"] for row in logged]
    await server_side.finish()  # the drop cut the connection: nothing waits for the client
    slow_transport.resume_reading()
    await slow.close_code()
    assert slow.ws.closed
