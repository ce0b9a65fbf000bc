"""Listing and reading conversations: visibility per role, scopes, filters, keyset pages."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from tests.core.routing.helpers import (
    add_agent,
    add_department,
    conversation_of,
    insert_conversation,
    join,
    new_phone,
    sql,
)

from .conftest import BASE_TIME, text_message


async def _open(post_webhook: Any, channel: Any, text: str = "Oi", **kwargs: Any) -> uuid.UUID:
    """A conversation opened by a real first message; returns its id."""
    message = text_message(text, phone=new_phone(), **kwargs)
    resp = await post_webhook(channel, [message])
    assert resp.status == 200, await resp.text()
    return await conversation_of(message.provider_message_id)


async def _list(client: Any, headers: dict[str, str], **params: Any) -> Any:
    resp = await client.get("/api/v1/conversations", params=params, headers=headers)
    return resp.status, await resp.json()


def _ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["items"]]


async def test_list_item_carries_contact_channel_people_and_last_message(
    client, make_company, make_channel, post_webhook, auth_headers
):
    company = await make_company()
    dept = await add_department(company.tenant_id, "Suporte")
    agent = await add_agent(company, (dept,))
    channel = await make_channel(company.tenant_id, department_id=dept)
    first = text_message("primeira", phone="5511987650001", name="Bia Lima")
    last = text_message("segunda, mais nova", phone="5511987650001", at=BASE_TIME.replace(hour=14))
    await post_webhook(channel, [first])
    await post_webhook(channel, [last])

    status, body = await _list(client, await auth_headers(company.owner))

    assert status == 200
    (item,) = body["items"]
    assert item["status"] == "ACTIVE"
    assert item["contact"]["name"] == "Bia Lima"
    assert item["contact"]["phone"] == "+5511987650001"
    assert item["channel"] == {"id": str(channel.id), "name": "Fake WhatsApp", "type": "fake"}
    assert item["department"] == {"id": str(dept), "name": "Suporte"}
    assert item["assignee"] == {"id": str(agent.user_id), "name": "Agent"}
    assert item["tabulation"] is None
    assert item["last_message"]["body"] == "segunda, mais nova"
    assert item["last_message"]["direction"] == "in"
    assert item["last_message_at"] == "2025-03-14T14:15:00Z"
    assert body["next_cursor"] is None


async def test_latest_activity_first_with_a_cursor_that_walks_every_row(
    client, make_company, make_channel, post_webhook, auth_headers
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    opened = [
        await _open(post_webhook, channel, at=BASE_TIME + dt.timedelta(minutes=i)) for i in range(5)
    ]
    headers = await auth_headers(company.owner)

    seen: list[str] = []
    cursor = None
    for _ in range(3):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        status, body = await _list(client, headers, **params)
        assert status == 200
        seen += _ids(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(cid) for cid in reversed(opened)]
    assert cursor is None

    status, body = await _list(client, headers, cursor="not-a-cursor")
    assert status == 400
    assert body["error"]["code"] == "invalid_cursor"


async def test_each_role_sees_what_the_visibility_rule_allows(
    client, make_company, make_channel, auth_headers
):
    company = await make_company()
    mine, other = await add_department(company.tenant_id), await add_department(company.tenant_id)
    agent = await add_agent(company, (mine,))
    colleague = await add_agent(company, (mine,))
    supervisor = await add_agent(company, (mine,), role="supervisor")
    channel = await make_channel(company.tenant_id)
    tenant = company.tenant_id
    scene = {
        "own": await insert_conversation(
            tenant, channel.id, department_id=other, assignee_id=agent.user_id, status="ACTIVE"
        ),
        "queue_mine": await insert_conversation(tenant, channel.id, department_id=mine),
        "queue_none": await insert_conversation(tenant, channel.id),
        "bot_mine": await insert_conversation(tenant, channel.id, department_id=mine, status="BOT"),
        "colleague": await insert_conversation(
            tenant, channel.id, department_id=mine, assignee_id=colleague.user_id, status="ACTIVE"
        ),
        "queue_other": await insert_conversation(tenant, channel.id, department_id=other),
        "closed_mine": await insert_conversation(
            tenant, channel.id, department_id=mine, status="CLOSED"
        ),
    }
    names = {str(cid): name for name, cid in scene.items()}

    async def visible(member: Any, **params: Any) -> set[str]:
        status, body = await _list(client, await auth_headers(member), limit=200, **params)
        assert status == 200, body
        return {names[i] for i in _ids(body)}

    assert await visible(agent) == {"own", "queue_mine", "queue_none", "bot_mine"}
    assert await visible(supervisor) == {
        "queue_mine",
        "queue_none",
        "bot_mine",
        "colleague",
        "closed_mine",
    }
    assert await visible(company.owner) == set(scene)
    viewer = await company.add("viewer")
    assert await visible(viewer) == set(scene)

    for name, conversation_id in scene.items():
        resp = await client.get(
            f"/api/v1/conversations/{conversation_id}", headers=await auth_headers(agent)
        )
        expected = 200 if name in {"own", "queue_mine", "queue_none", "bot_mine"} else 404
        assert resp.status == expected, name


async def test_scopes_narrow_and_never_widen(client, make_company, make_channel, auth_headers):
    company = await make_company()
    dept = await add_department(company.tenant_id)
    agent = await add_agent(company, (dept,))
    supervisor = await add_agent(company, (dept,), role="supervisor")
    admin = await company.add("admin")
    await join(company.tenant_id, dept, admin.user_id)
    channel = await make_channel(company.tenant_id)
    tenant = company.tenant_id
    own = await insert_conversation(
        tenant, channel.id, department_id=dept, assignee_id=agent.user_id, status="ACTIVE"
    )
    queued = await insert_conversation(tenant, channel.id, department_id=dept)
    loose = await insert_conversation(tenant, channel.id)

    agent_headers = await auth_headers(agent)
    status, body = await _list(client, agent_headers, scope="all")
    assert status == 403
    assert body["error"]["code"] == "scope_not_allowed"
    status, _ = await _list(client, await auth_headers(supervisor), scope="all")
    assert status == 403

    status, body = await _list(client, agent_headers, scope="mine")
    assert _ids(body) == [str(own)]
    status, body = await _list(client, agent_headers, scope="departments")
    assert set(_ids(body)) == {str(own), str(queued)}

    admin_headers = await auth_headers(admin)
    status, body = await _list(client, admin_headers, scope="all")
    assert status == 200
    assert set(_ids(body)) == {str(own), str(queued), str(loose)}
    status, body = await _list(client, admin_headers, scope="departments")
    assert set(_ids(body)) == {str(own), str(queued)}
    status, body = await _list(client, admin_headers, scope="mine")
    assert _ids(body) == []

    status, body = await _list(client, admin_headers, scope="everything")
    assert status == 422


async def test_filters_by_category_department_assignee_and_contact(
    client, make_company, make_channel, auth_headers
):
    company = await make_company()
    dept = await add_department(company.tenant_id)
    agent = await add_agent(company, (dept,))
    channel = await make_channel(company.tenant_id)
    tenant = company.tenant_id
    active = await insert_conversation(
        tenant, channel.id, department_id=dept, assignee_id=agent.user_id, status="ACTIVE"
    )
    bot = await insert_conversation(tenant, channel.id, status="BOT")
    closed = await insert_conversation(tenant, channel.id, department_id=dept, status="CLOSED")
    pending = await insert_conversation(tenant, channel.id)
    headers = await auth_headers(company.owner)

    for category, expected in (
        ("active", active),
        ("bot", bot),
        ("closed", closed),
        ("pending", pending),
    ):
        _, body = await _list(client, headers, category=category)
        assert _ids(body) == [str(expected)], category
    _, body = await _list(client, headers, department_id=str(dept))
    assert set(_ids(body)) == {str(active), str(closed)}
    _, body = await _list(client, headers, assignee_id=str(agent.user_id))
    assert _ids(body) == [str(active)]
    contact = (await sql("SELECT contact FROM conversations WHERE id = {}", bot))[0]["contact"]
    _, body = await _list(client, headers, contact_id=str(contact))
    assert _ids(body) == [str(bot)]


async def test_other_companies_conversations_are_not_found(
    client, make_company, make_channel, auth_headers
):
    company, other = await make_company(), await make_company()
    channel = await make_channel(other.tenant_id)
    theirs = await insert_conversation(other.tenant_id, channel.id)
    headers = await auth_headers(company.owner)

    resp = await client.get(f"/api/v1/conversations/{theirs}", headers=headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    _, body = await _list(client, headers, scope="all")
    assert str(theirs) not in _ids(body)
    resp = await client.get("/api/v1/conversations/not-a-uuid", headers=headers)
    assert resp.status == 404
