"""`GET /api/v1/events?after=`: what a reconnecting client missed, with the socket's rule."""

from __future__ import annotations

from ..conversations.conftest import text_message
from .conftest import connect, make_department, set_online


async def _events(client, headers, **query):
    resp = await client.get("/api/v1/events", params=query, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_resync_returns_missed_events_the_caller_may_see(
    client, make_company, make_channel, post_webhook, auth_headers
):
    company = await make_company()
    agent = await company.add("agent")
    stranger = await company.add("agent")
    support = await make_department(company.tenant_id, agent)
    await make_department(company.tenant_id, stranger)
    await set_online(agent)
    channel = await make_channel(company.tenant_id, department_id=support)
    other = await make_company()
    other_channel = await make_channel(other.tenant_id)
    socket = await connect(client, agent)
    after = socket.ready["last_seq"]
    await socket.ws.close()  # offline while things happen

    await post_webhook(channel, [text_message("primeira")])
    await post_webhook(channel, [text_message("segunda")])
    await post_webhook(other_channel, [text_message("de outra empresa")])

    mine = await _events(client, await auth_headers(agent), after=after)
    assert [
        (e["type"], e["data"].get("action") or e["data"].get("body")) for e in mine["items"]
    ] == [
        ("conversation.updated", "opened"),
        ("message.new", "primeira"),
        ("conversation.updated", "assigned"),
        ("message.new", "segunda"),
    ]
    seqs = [e["seq"] for e in mine["items"]]
    assert seqs == sorted(seqs) and all(seq > after for seq in seqs)
    assert mine["next_after"] == seqs[-1] and mine["has_more"] is False
    theirs = await _events(client, await auth_headers(stranger), after=after)
    assert theirs["items"] == [] and theirs["has_more"] is False
    owner = await _events(client, await auth_headers(company.owner), after=after)
    assert [e["seq"] for e in owner["items"]] == seqs
    outsider = await _events(client, await auth_headers(other.owner), after=after)
    assert [e["data"].get("body") for e in outsider["items"] if e["type"] == "message.new"] == [
        "de outra empresa"
    ]


async def test_resync_pages_with_next_after(
    client, make_company, make_channel, post_webhook, auth_headers
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    headers = await auth_headers(company.owner)
    start = (await _events(client, headers))["next_after"]
    for n in range(3):
        await post_webhook(channel, [text_message(f"m{n}")])

    pages, after = [], start
    while True:
        page = await _events(client, headers, after=after, limit=2)
        pages.append(page["items"])
        after = page["next_after"]
        if not page["has_more"]:
            break

    assert [len(items) for items in pages] == [2, 2, 0]  # opened + 3 messages
    bodies = [e["data"]["body"] for items in pages for e in items if e["type"] == "message.new"]
    assert bodies == ["m0", "m1", "m2"]


async def test_resync_validates_its_query(client, make_company, auth_headers):
    company = await make_company()
    headers = await auth_headers(company.owner)

    for query in ({"after": "-1"}, {"limit": "501"}, {"limit": "0"}, {"after": "abc"}):
        resp = await client.get("/api/v1/events", params=query, headers=headers)
        assert resp.status == 422, query
        assert (await resp.json())["error"]["code"] == "validation_error"
