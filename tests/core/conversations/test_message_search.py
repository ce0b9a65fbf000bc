"""GET /api/v1/messages/search: text search per company, scoped like the conversation list."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import login

from .conftest import text_message

URL = "/api/v1/messages/search"


async def _search(client: Any, headers: dict[str, str], **params: Any) -> Any:
    return await client.get(URL, params=params, headers=headers)


async def _hits(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = await _search(client, headers, **query)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        items += page["items"]
        if (cursor := page["next_cursor"]) is None:
            return items
    raise AssertionError("pagination did not end")


async def _department(client: Any, headers: dict[str, str]) -> str:
    resp = await client.post(
        "/api/v1/departments", json={"name": f"D {uuid.uuid4().hex[:6]}"}, headers=headers
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def test_search_finds_text_across_conversations_newest_first_and_paginates(
    client, make_company, make_channel, post_webhook
):
    company, other = await make_company(), await make_company()
    channel = await make_channel(company.tenant_id)
    their_channel = await make_channel(other.tenant_id)
    for n in range(5):
        phone = f"55119876500{n:02d}"
        resp = await post_webhook(
            channel, [text_message(f"Meu PEDIDO #45{n} não chegou", phone=phone)]
        )
        assert resp.status == 200
    await post_webhook(channel, [text_message("bom dia", phone="5511987650099")])
    await post_webhook(their_channel, [text_message("pedido #999 atrasado")])
    headers = await login(client, company.owner)

    hits = await _hits(client, headers, q="pedido #4", limit=2)

    assert len(hits) == 5 and len({h["id"] for h in hits}) == 5
    assert all("PEDIDO #45" in h["body"] for h in hits)
    assert hits[0]["contact_name"] == "Ana Souza" and hits[0]["conversation_status"] == "PENDING"
    stamps = [h["created_at"] for h in hits]
    assert stamps == sorted(stamps, reverse=True)
    assert await _hits(client, headers, q="#999") == []  # the other company's message
    assert await _hits(client, headers, q="50%") == []  # LIKE wildcards are literal
    one = hits[0]["conversation_id"]
    assert {
        h["conversation_id"] for h in await _hits(client, headers, q="pedido", conversation_id=one)
    } == {one}


async def test_agents_find_only_what_they_may_see(client, company, make_channel, post_webhook):
    owner = await login(client, company.owner)
    department = await _department(client, owner)
    channel = await make_channel(company.tenant_id, department_id=uuid.UUID(department))
    await post_webhook(channel, [text_message("segunda via do boleto")])
    outsider, insider = await company.add("agent"), await company.add("agent")
    resp = await client.put(
        f"/api/v1/departments/{department}/members/{insider.user_id}", headers=owner
    )
    assert resp.status in (200, 201, 204), await resp.text()

    assert await _hits(client, await login(client, outsider), q="boleto") == []
    insider_headers = await login(client, insider)
    assert len(await _hits(client, insider_headers, q="boleto")) == 1
    assert await _hits(client, insider_headers, q="boleto", scope="mine") == []
    refused = await _search(client, insider_headers, q="boleto", scope="all")
    assert refused.status == 403


async def test_bad_queries_are_clear_errors(client, company):
    headers = await login(client, company.owner)
    for params, status in (
        ({}, 422),
        ({"q": "ab"}, 422),  # the trigram index needs 3 characters
        ({"q": "  a  "}, 422),
        ({"q": "pedido", "cursor": "zzz"}, 400),
        ({"q": "pedido", "since": "2026-01-01T00:00:00"}, 422),
    ):
        resp = await _search(client, headers, **params)
        assert resp.status == status, (params, await resp.text())
    anonymous = await client.get(URL, params={"q": "pedido"})
    assert anonymous.status == 401


async def test_the_search_is_served_by_the_trigram_index(client):
    """pg_trgm is installed on the test server, so the migration built the index."""
    from .conftest import fetch

    rows = await fetch("SELECT indexdef FROM pg_indexes WHERE indexname = 'messages_body_trgm_idx'")
    assert rows and "gin_trgm_ops" in rows[0]["indexdef"]
