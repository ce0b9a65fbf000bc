"""A conversation's message page (`GET /conversations/{id}/messages`): one statement that
checks visibility and reads the page, so an empty page and a hidden conversation must
still answer differently, and every role sees exactly what it saw before."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from tests.core.routing.helpers import (
    add_agent,
    add_department,
    conversation_of,
    insert_conversation,
    new_phone,
)

from .conftest import BASE_TIME, text_message


async def _page(client: Any, headers: dict[str, str], conversation: uuid.UUID, **params: Any):
    resp = await client.get(
        f"/api/v1/conversations/{conversation}/messages", params=params, headers=headers
    )
    return resp.status, await resp.json()


async def test_empty_conversation_is_an_empty_page_and_a_hidden_one_is_404(
    client, make_company, make_channel, auth_headers
):
    company = await make_company()
    other = await make_company()
    dept = await add_department(company.tenant_id)
    agent = await add_agent(company, (dept,))
    channel = await make_channel(company.tenant_id)
    empty = await insert_conversation(company.tenant_id, channel.id, department_id=dept)
    someone_elses = await insert_conversation(
        company.tenant_id,
        channel.id,
        department_id=dept,
        status="ACTIVE",
        assignee_id=(await add_agent(company, (dept,))).user_id,
    )

    status, body = await _page(client, await auth_headers(company.owner), empty)
    assert (status, body) == (200, {"items": [], "next_cursor": None})
    status, body = await _page(client, await auth_headers(agent), empty)  # queued, my dept
    assert (status, body["items"]) == (200, [])

    status, body = await _page(client, await auth_headers(agent), someone_elses)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await _page(client, await auth_headers(other.owner), empty)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await _page(client, await auth_headers(company.owner), uuid.uuid4())
    assert status == 404


async def test_messages_are_hidden_from_who_may_not_see_them(
    client, make_company, make_channel, post_webhook, auth_headers
):
    company = await make_company()
    other = await make_company()
    dept = await add_department(company.tenant_id)
    elsewhere = await add_department(company.tenant_id)
    outsider = await add_agent(company, (elsewhere,))
    supervisor = await add_agent(company, (dept,), role="supervisor")
    channel = await make_channel(company.tenant_id, department_id=dept)
    message = text_message("meu pedido", phone=new_phone())
    assert (await post_webhook(channel, [message])).status == 200
    conversation = await conversation_of(message.provider_message_id)

    for who in (company.owner, supervisor):
        status, body = await _page(client, await auth_headers(who), conversation)
        assert status == 200
        assert [item["body"] for item in body["items"]] == ["meu pedido"]
    for who in (outsider, other.owner):
        status, body = await _page(client, await auth_headers(who), conversation)
        assert status == 404, body


async def test_pages_walk_every_message_once_newest_first(
    client, make_company, make_channel, post_webhook, auth_headers
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    phone = new_phone()
    messages = [
        text_message(f"m{i}", phone=phone, at=BASE_TIME + dt.timedelta(seconds=i // 2))
        for i in range(7)  # pairs share a timestamp: the id breaks the tie
    ]
    for message in messages:
        assert (await post_webhook(channel, [message])).status == 200
    conversation = await conversation_of(messages[0].provider_message_id)
    headers = await auth_headers(company.owner)

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        status, body = await _page(client, headers, conversation, **params)
        assert status == 200
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(item["body"] for item in seen) == [f"m{i}" for i in range(7)]
    assert len({item["id"] for item in seen}) == 7
    keys = [(item["created_at"], item["id"]) for item in seen]
    assert keys == sorted(keys, reverse=True)
    first = next(item for item in seen if item["body"] == "m0")  # m1 may tie it and sort after
    assert first["content"]["text"] == "m0"  # the normalised message, not the raw body
    assert first["content"]["provider_message_id"] == messages[0].provider_message_id
    assert first["media_id"] is None
    assert set(first) >= {"media_id", "content", "provider_message_id", "status"}
    status, body = await _page(client, headers, conversation, cursor="not-a-cursor")
    assert status == 400 and body["error"]["code"] == "invalid_cursor"
