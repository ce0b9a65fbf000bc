"""ChatGuru history in the same contact timeline as live channels, and the query API:
messages by phone (E.164 or digits, cursor pages, `x-api-key`) and chats by tag /
funnel step / agent / period; all tenant-scoped."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest

from guiche.runtime.services import SERVICES
from tests.conftest import login
from tests.plugins.meta_cloud.conftest import (
    FIXTURE_PHONE_ID,
    FakeGraph,
    config,
    fixture_bytes,
    now_ts,
    post_channel_webhook,
    rewrite,
    unique_phone_id,
    with_timestamps,
)

from .conftest import BASE, catalog, enable, fetch

ANA = "+5511987654321"


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
async def routed(client: Any, graph: FakeGraph, fake: Any) -> None:
    """Graph calls go to the fake Graph; everything else (the fake ChatGuru) goes out."""
    services = client.server.app[SERVICES]
    real = httpx.AsyncClient()

    async def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "graph.test":
            return graph.handler(request)
        answer = await real.send(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    if services.http is not None:
        await services.http.aclose()
    services.http = httpx.AsyncClient(transport=httpx.MockTransport(route))
    yield
    await real.aclose()


async def test_chatguru_and_meta_land_in_one_contact(client, account, routed) -> None:
    await catalog(client, account)
    company = account.company
    resp = await client.put(
        "/api/v1/plugins/meta_cloud", json={"enabled": True}, headers=account.headers
    )
    assert resp.status == 200, await resp.text()
    phone_id = unique_phone_id()
    resp = await client.post(
        "/api/v1/channels",
        json={
            "type": "meta_cloud",
            "name": "WhatsApp",
            "credentials": config(phone_number_id=phone_id),
        },
        headers=account.headers,
    )
    assert resp.status == 201, await resp.text()
    meta_channel = uuid.UUID((await resp.json())["id"])
    body = with_timestamps(fixture_bytes("webhook_text.json"), now_ts())
    body = rewrite(body, **{FIXTURE_PHONE_ID: phone_id})
    resp = await post_channel_webhook(client, meta_channel, body)
    assert resp.status == 200, await resp.text()
    contacts = await fetch(
        "SELECT DISTINCT m.contact FROM messages m JOIN contacts c ON c.id = m.contact "
        "WHERE m.tenant = {} AND c.phone = {}",
        company.tenant_id,
        ANA,
    )
    assert len(contacts) == 1
    resp = await client.get(f"{BASE}/messages", params={"phone": ANA}, headers=account.headers)
    page = await resp.json()
    kinds = {item["channel_type"] for item in page["items"]}
    assert kinds == {"chatguru", "meta_cloud"}
    assert page["items"][0]["channel_type"] == "meta_cloud"  # the newest first


async def test_messages_by_phone_pages_newest_first(client, account) -> None:
    await catalog(client, account)
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"phone": "5511987654321", "limit": "4"}
        if cursor:
            params["cursor"] = cursor
        resp = await client.get(f"{BASE}/messages", params=params, headers=account.headers)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        assert page["phone"] == ANA
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6
    times = [item["created_at"] for item in seen]
    assert times == sorted(times, reverse=True)
    # dates are shown in the company's zone (America/Sao_Paulo, -03:00)
    assert all(t.endswith("-03:00") for t in times)
    assert seen[-1]["provider_message_id"] == "64d4d4b4716cd193800da372"


async def test_brazil_ninth_digit_and_bad_input(client, account) -> None:
    await catalog(client, account)  # Mariana's wa_chat_id lacks the ninth digit
    for phone in ("+55 31 98888-7777", "553188887777", "5531988887777"):
        resp = await client.get(
            f"{BASE}/messages", params={"phone": phone}, headers=account.headers
        )
        page = await resp.json()
        assert page["phone"] == "+5531988887777" and len(page["items"]) == 9, phone
    resp = await client.get(f"{BASE}/messages", params={"phone": "abc"}, headers=account.headers)
    assert resp.status == 422
    resp = await client.get(
        f"{BASE}/messages", params={"phone": ANA, "limit": "201"}, headers=account.headers
    )
    assert resp.status == 422
    resp = await client.get(
        f"{BASE}/messages", params={"phone": ANA, "cursor": "nope"}, headers=account.headers
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_cursor"


async def test_api_key_in_x_api_key_and_tenancy(client, account, make_company) -> None:
    await catalog(client, account)
    resp = await client.post(
        "/api/v1/api-keys", json={"name": "cataloger"}, headers=account.headers
    )
    assert resp.status == 201, await resp.text()
    key = (await resp.json())["key"]
    resp = await client.get(f"{BASE}/messages", params={"phone": ANA}, headers={"x-api-key": key})
    assert resp.status == 200, await resp.text()
    assert len((await resp.json())["items"]) == 6
    resp = await client.get(f"{BASE}/messages", params={"phone": ANA})
    assert resp.status == 401
    # another company: its own (empty) view of the same phone, none of these chats
    other = await make_company()
    headers = await login(client, other.owner)
    await enable(client, headers)
    resp = await client.get(f"{BASE}/messages", params={"phone": ANA}, headers=headers)
    assert (await resp.json())["items"] == []
    resp = await client.get(f"{BASE}/chats", headers=headers)
    assert (await resp.json())["items"] == []
    # and a company without the plugin does not see the routes at all
    third = await make_company()
    resp = await client.get(
        f"{BASE}/messages", params={"phone": ANA}, headers=await login(client, third.owner)
    )
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "plugin_not_enabled"


async def test_chats_by_tag_step_agent_and_period(client, account) -> None:
    fake = account.fake
    fake.chats["c1ef367622b640f500637aab"]["funnel_steps"] = [{"name": "Proposta"}]
    await catalog(client, account)

    async def chats(**params: str) -> list[str]:
        resp = await client.get(f"{BASE}/chats", params=params, headers=account.headers)
        assert resp.status == 200, await resp.text()
        return [item["name"] for item in (await resp.json())["items"]]

    assert await chats(tag="cliente-vip") == ["Ana Beatriz Souza"]
    assert await chats(tag="bh") == ["Mariana Ferreira"]
    assert await chats(funnel_step="Proposta") == ["Carlos Eduardo Lima"]
    assert len(await chats(agent="U54e92470973b6399e956886e")) == 3
    assert await chats(agent="nobody") == []
    # last messages: Ana 14/03 11:15 (-03:00), Carlos 10:45, Mariana 13/03
    assert await chats(since="2025-03-14") == ["Ana Beatriz Souza", "Carlos Eduardo Lima"]
    assert await chats(until="2025-03-14") == ["Mariana Ferreira"]
    resp = await client.get(
        f"{BASE}/chats",
        params={"since": "2025-03-15", "until": "2025-03-14"},
        headers=account.headers,
    )
    assert resp.status == 422
    # a tag removed upstream is closed in the history, not forgotten
    fake.chats["b7437d92e881a1814149a47e"]["tags"] = []
    fake.chats["b7437d92e881a1814149a47e"]["updated"] = {
        "$date": int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    }
    await catalog(client, account)
    assert await chats(tag="cliente-vip") == []
    rows = await fetch(
        "SELECT tag, to_at IS NOT NULL AS closed FROM chatguru_chat_tags "
        "WHERE account = {} AND chat_id = 'b7437d92e881a1814149a47e'",
        account.channel_id,
    )
    assert rows == [{"tag": "cliente-vip", "closed": True}]


async def test_phones_and_agents_of_an_account_with_their_chats(
    client, account, make_company
) -> None:
    await catalog(client, account)
    account.fake.chats["c1ef367622b640f500637aab"]["users_delegated_ids"] = []
    account.fake.add_message("c1ef367622b640f500637aab", "passou para o bot")
    await catalog(client, account)  # the chat list again: one delegation closed
    resp = await client.get(f"{account.url}/phones", headers=account.headers)
    assert resp.status == 200, await resp.text()
    [phone] = (await resp.json())["items"]
    assert phone["phone_id"] == "e48624590c8e11c46bb0fb57" and phone["chats"] == 3
    resp = await client.get(f"{account.url}/agents", headers=account.headers)
    [agent] = (await resp.json())["items"]
    assert agent["agent_id"] == "U54e92470973b6399e956886e"
    assert (agent["chats"], agent["chats_ever"]) == (2, 3)
    other = await make_company()
    headers = await login(client, other.owner)
    await enable(client, headers)
    for path in ("phones", "agents"):
        resp = await client.get(f"{account.url}/{path}", headers=headers)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "account_not_found"
