"""Concurrent webhooks share transactions (guiche.inbound.coalesce), and still answer alone.

Each test posts webhooks at once through the real route, with a coalescing window wide
enough that they meet in the same transaction, and checks what each caller was told
and what the database holds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from guiche.inbound.coalesce import coalescer_for
from guiche.runtime.services import SERVICES
from guiche.testing import FAKE_SIGNATURE_HEADER, fake_webhook_body, sign_fake

from .conftest import fetch, text_message


@pytest.fixture
async def client(make_client: Any, fake_plugin: Any) -> Any:
    return await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin),), ingest_coalesce_window_ms=50
    )


def _phone(index: int) -> str:
    return f"55119{index:08d}"


async def test_concurrent_webhooks_share_a_transaction_and_each_is_answered(
    client: Any, make_company: Any, make_channel: Any, post_webhook: Any
) -> None:
    company = await make_company()
    channels = [await make_channel(company.tenant_id) for _ in range(2)]
    messages = [text_message(f"oi {i}", phone=_phone(i)) for i in range(20)]

    answers = await asyncio.gather(
        *(post_webhook(channels[i % 2], [m]) for i, m in enumerate(messages))
    )

    assert [a.status for a in answers] == [200] * 20
    bodies = [await a.json() for a in answers]
    assert all((b["messages"], b["duplicates"], b["failed"]) == (1, 0, 0) for b in bodies)
    stored = await fetch(
        "SELECT provider_message_id, channel FROM messages WHERE tenant = {}", company.tenant_id
    )
    assert sorted(r["provider_message_id"] for r in stored) == sorted(
        m.provider_message_id for m in messages
    )
    by_channel = {c.id: 0 for c in channels}
    for row in stored:
        by_channel[row["channel"]] += 1
    assert list(by_channel.values()) == [10, 10]  # each on its own channel
    stats = coalescer_for(client.app[SERVICES]).stats
    assert stats.webhooks == 20
    assert stats.transactions < 20  # they met
    assert stats.largest > 1


async def test_each_caller_gets_its_own_conversation_events(
    client: Any, make_company: Any, make_channel: Any, post_webhook: Any
) -> None:
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    messages = [text_message(f"olá {i}", phone=_phone(100 + i)) for i in range(6)]

    answers = await asyncio.gather(*(post_webhook(channel, [m]) for m in messages))

    bodies = [await a.json() for a in answers]
    assert [b["messages"] for b in bodies] == [1] * 6
    conversations = await fetch(
        "SELECT count(*) AS n FROM conversations WHERE tenant = {}", company.tenant_id
    )
    assert conversations[0]["n"] == 6  # six new contacts, six conversations opened
    events = await fetch(
        "SELECT type, count(*) AS n FROM events WHERE tenant = {} GROUP BY type",
        company.tenant_id,
    )
    counts = {row["type"]: row["n"] for row in events}
    assert counts["message.new"] == 6


async def test_a_redelivery_in_the_same_group_is_a_duplicate_not_a_failure(
    client: Any, make_company: Any, make_channel: Any, post_webhook: Any
) -> None:
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    message = text_message("uma vez só", phone=_phone(200))
    other = text_message("outra", phone=_phone(201))

    answers = await asyncio.gather(
        post_webhook(channel, [message]),
        post_webhook(channel, [message]),
        post_webhook(channel, [other]),
    )

    bodies = [await a.json() for a in answers]
    assert [a.status for a in answers] == [200, 200, 200]
    assert sorted(b["messages"] for b in bodies[:2]) == [0, 1]
    assert sorted(b["duplicates"] for b in bodies[:2]) == [0, 1]
    rows = await fetch("SELECT count(*) AS n FROM messages WHERE tenant = {}", company.tenant_id)
    assert rows[0]["n"] == 2


async def test_a_refused_webhook_fails_alone_and_its_neighbours_are_kept(
    client: Any, make_company: Any, make_channel: Any, post_webhook: Any
) -> None:
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    good = [text_message(f"boa {i}", phone=_phone(300 + i)) for i in range(5)]
    # message_keys.provider_message_id is varchar(200): the database refuses this one.
    bad = text_message("ruim", phone=_phone(399), provider_id="wamid." + "X" * 300)

    answers = await asyncio.gather(
        *(post_webhook(channel, [m]) for m in good[:2]),
        post_webhook(channel, [bad]),
        *(post_webhook(channel, [m]) for m in good[2:]),
    )

    assert [a.status for a in answers] == [200] * 6  # a retry could never store it
    bodies = [await a.json() for a in answers]
    assert bodies[2]["failed"] == 1 and bodies[2]["messages"] == 0
    assert all(b["messages"] == 1 and b["failed"] == 0 for i, b in enumerate(bodies) if i != 2)
    stored = await fetch(
        "SELECT provider_message_id FROM messages WHERE tenant = {}", company.tenant_id
    )
    assert sorted(r["provider_message_id"] for r in stored) == sorted(
        m.provider_message_id for m in good
    )
    assert coalescer_for(client.app[SERVICES]).stats.apart >= 1


async def test_other_tenants_webhooks_in_the_same_transaction_stay_theirs(
    client: Any, make_company: Any, make_channel: Any, post_webhook: Any
) -> None:
    first, second = await make_company(), await make_company()
    a, b = await make_channel(first.tenant_id), await make_channel(second.tenant_id)
    phone = _phone(400)  # the same person writes to both companies

    answers = await asyncio.gather(
        post_webhook(a, [text_message("para A", phone=phone)]),
        post_webhook(b, [text_message("para B", phone=phone)]),
    )

    assert [r.status for r in answers] == [200, 200]
    for company, body in ((first, "para A"), (second, "para B")):
        rows = await fetch(
            "SELECT m.body, c.tenant AS contact_tenant FROM messages m"
            " JOIN contacts c ON c.id = m.contact WHERE m.tenant = {}",
            company.tenant_id,
        )
        assert [(r["body"], r["contact_tenant"]) for r in rows] == [(body, company.tenant_id)]


async def test_a_lone_webhook_waits_no_longer_than_the_window(
    make_client: Any, fake_plugin: Any, make_company: Any, make_channel: Any
) -> None:
    """With the window at 0 a lone webhook is stored at once, in its own transaction."""
    app_client = await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin),), ingest_coalesce_window_ms=0
    )
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    body = fake_webhook_body([text_message("sozinha", phone=_phone(500))], [])
    resp = await app_client.post(
        channel.url,
        data=body,
        headers={FAKE_SIGNATURE_HEADER: sign_fake(body), "Content-Type": "application/json"},
    )

    assert resp.status == 200
    assert (await resp.json())["messages"] == 1
    stats = coalescer_for(app_client.app[SERVICES]).stats
    assert (stats.transactions, stats.webhooks) == (1, 1)
    rows = await fetch("SELECT body FROM messages WHERE tenant = {}", company.tenant_id)
    assert [r["body"] for r in rows] == ["sozinha"]
