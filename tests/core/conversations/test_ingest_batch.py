"""The set-based ingest (`guiche.inbound.store`): a whole batch in one statement.

A 20-message webhook mixing every case the statement settles (new contacts, a contact
with an open conversation, two messages of one new sender, repeats within the batch
and of stored messages, replies within the batch and to older messages, senders
without a phone), and the races it must settle without a retry: another transaction
opening the same contact's conversation meanwhile, and concurrent webhooks sharing
senders.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any

import asyncpg

from guiche.channels import InboundMessage, MessageType, Sender
from guiche.runtime.services import SERVICES
from tests.conftest import published_events

from .conftest import BASE_TIME, fetch, text_message


def _at(minutes: int) -> dt.datetime:
    return BASE_TIME + dt.timedelta(minutes=minutes)


def _reply(text: str, to: str, *, phone: str, at: dt.datetime) -> InboundMessage:
    message = text_message(text, phone=phone, at=at)
    return message.model_copy(update={"reply_to_provider_message_id": to})


async def _messages(tenant_id: Any) -> dict[str, dict[str, Any]]:
    rows = await fetch("SELECT * FROM messages WHERE tenant = {}", tenant_id)
    return {row["provider_message_id"]: row for row in rows}


async def test_a_mixed_batch_is_stored_like_one_message_at_a_time(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    services = client.server.app[SERVICES]
    regular = "5511987650001"  # already writing to us, with an open conversation
    older = text_message("pedido 123", phone=regular, name="", at=_at(-60))
    await post_webhook(channel, [older])
    before = await fetch("SELECT * FROM conversations WHERE tenant = {}", company.tenant_id)

    newcomers = [f"55119876500{n:02d}" for n in range(10, 20)]  # ten new phones
    twice = "5511987650099"  # a new phone writing twice in the batch
    first_of_twice = text_message("oi", phone=twice, name="", at=_at(1))
    batch = [
        *(text_message(f"novo {i}", phone=p, at=_at(2 + i)) for i, p in enumerate(newcomers)),
        first_of_twice,
        _reply("respondendo", first_of_twice.provider_message_id, phone=twice, at=_at(15)),
        text_message("sou eu", phone=regular, name="Rita", at=_at(16)),
        _reply("e o pedido?", older.provider_message_id, phone=regular, at=_at(17)),
        text_message("sem telefone", phone=None, user_id="BR.111", name="Bia", at=_at(18)),
        text_message("de novo", phone=None, user_id="BR.111", name="Bia", at=_at(19)),
        text_message("numero torto", phone="12", name="Zé", at=_at(20)),
        older,  # stored before: a duplicate
    ]
    repeated = text_message("repetida", phone=newcomers[0], at=_at(21))
    batch += [repeated, repeated]  # the same provider id twice in one batch
    random.Random(7).shuffle(batch)  # arrival order is not storing order
    assert len(batch) == 20
    with published_events(services.bus) as seen:
        resp = await post_webhook(channel, batch)

    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["messages"], body["duplicates"]) == (18, 2)
    contacts = await fetch("SELECT * FROM contacts WHERE tenant = {}", company.tenant_id)
    # regular + ten newcomers + twice + BR.111 + the malformed number
    assert len(contacts) == 14
    names = {c["phone"]: c["name"] for c in contacts}
    assert names["+" + regular] == "Rita"  # an empty name is filled in
    assert names["+" + twice] == "Ana Souza"  # its second message's name
    conversations = await fetch("SELECT * FROM conversations WHERE tenant = {}", company.tenant_id)
    assert len(conversations) == 14  # one per contact, the regular's kept
    stored = await _messages(company.tenant_id)
    assert len(stored) == 19
    by_contact: dict[Any, set[Any]] = {}
    for row in stored.values():
        by_contact.setdefault(row["contact"], set()).add(row["conversation"])
    assert all(len(c) == 1 for c in by_contact.values())  # each contact in one conversation
    regular_conversation = before[0]["id"]
    assert stored[older.provider_message_id]["conversation"] == regular_conversation
    reply_older = next(r for r in stored.values() if r["body"] == "e o pedido?")
    reply_within = next(r for r in stored.values() if r["body"] == "respondendo")
    assert reply_older["reply_to"] == stored[older.provider_message_id]["id"]
    assert reply_within["reply_to"] == stored[first_of_twice.provider_message_id]["id"]
    assert (
        reply_within["conversation"] == stored[first_of_twice.provider_message_id]["conversation"]
    )
    assert stored[repeated.provider_message_id]["body"] == "repetida"
    touched = next(c for c in conversations if c["id"] == regular_conversation)
    assert touched["last_message_at"] == touched["last_inbound_at"] == _at(17)
    twice_conversation = next(c for c in conversations if c["id"] == reply_within["conversation"])
    assert (twice_conversation["opened_at"], twice_conversation["last_message_at"]) == (
        _at(1),
        _at(15),
    )
    identities = await fetch(
        "SELECT provider_user_id FROM contact_identities WHERE tenant = {}", company.tenant_id
    )
    assert sorted(i["provider_user_id"] for i in identities) == ["12", "BR.111"]

    # Events: recorded and published alike, in message (timestamp) order, each opened
    # conversation announced just before its first message.
    mine = [e for e in seen if e.tenant_id == company.tenant_id]
    recorded = await fetch(
        "SELECT * FROM events WHERE tenant = {} AND seq >= {} ORDER BY seq",
        company.tenant_id,
        mine[0].seq,
    )
    assert [(e.seq, e.type) for e in mine] == [(r["seq"], r["type"]) for r in recorded]
    assert [orjson_safe(e.data) for e in mine] == [r["data"] for r in recorded]
    assert sum(e.type == "conversation.updated" for e in mine) == 13
    news = [e for e in mine if e.type == "message.new"]
    assert [e.data["created_at"] for e in news] == sorted(e.data["created_at"] for e in news)
    assert len(news) == 18
    for i, event in enumerate(mine):
        if event.type == "conversation.updated":
            following = mine[i + 1]
            assert following.type == "message.new"
            assert following.conversation_id == event.conversation_id
            assert event.data["action"] == "opened" and event.data["status"] == "PENDING"


def orjson_safe(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data as stored (JSON), to compare with the recorded row."""
    import orjson

    from guiche.foundation.jsonio import dumps

    return orjson.loads(dumps(data))


async def test_a_conversation_opened_meanwhile_is_joined_not_opened_twice(
    client, make_company, make_channel, post_webhook, database_url
):
    """Another transaction creates the contact and opens its conversation while the
    statement runs: it waits on that insert, then takes the other's rows."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    phone = "5511987651234"
    other = await asyncpg.connect(database_url)
    try:
        transaction = other.transaction()
        await transaction.start()
        contact = await other.fetchval(
            "INSERT INTO contacts (tenant, phone, name) VALUES ($1, $2, '') RETURNING id",
            company.tenant_id,
            "+" + phone,
        )
        theirs = await other.fetchval(
            "INSERT INTO conversations (tenant, contact, channel, status)"
            " VALUES ($1, $2, $3, 'PENDING') RETURNING id",
            company.tenant_id,
            contact,
            channel.id,
        )
        posting = asyncio.create_task(
            post_webhook(channel, [text_message("oi", phone=phone, name="Caio")])
        )
        await _until_blocked_on_a_transaction()
        await transaction.commit()
        resp = await posting
    finally:
        await other.close()

    assert resp.status == 200 and (await resp.json())["messages"] == 1
    conversations = await fetch("SELECT * FROM conversations WHERE tenant = {}", company.tenant_id)
    assert [c["id"] for c in conversations] == [theirs]
    assert conversations[0]["last_inbound_at"] == BASE_TIME
    contacts = await fetch("SELECT * FROM contacts WHERE tenant = {}", company.tenant_id)
    assert [(c["id"], c["name"]) for c in contacts] == [(contact, "Caio")]
    stored = await _messages(company.tenant_id)
    assert [m["conversation"] for m in stored.values()] == [theirs]
    opened = await fetch(
        "SELECT * FROM events WHERE tenant = {} AND type = 'conversation.updated'",
        company.tenant_id,
    )
    assert opened == []  # the webhook did not open it


async def _until_blocked_on_a_transaction(within: float = 10.0) -> None:
    """Until a session of this test database waits for a lock (another's transaction)."""
    sql = (
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with asyncio.timeout(within):
        while not (await fetch(sql))[0]["n"]:  # each round trip yields to the loop
            pass


async def test_concurrent_batches_sharing_senders_open_each_conversation_once(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    phones = [f"55119876520{n:02d}" for n in range(5)]
    batches = []
    for i in range(8):
        batch = [
            text_message(f"{i}-{p}", phone=p, at=_at(i * 10 + j)) for j, p in enumerate(phones)
        ]
        random.Random(i).shuffle(batch)
        batches.append(batch)

    responses = await asyncio.gather(*(post_webhook(channel, b) for b in batches))

    assert [r.status for r in responses] == [200] * 8
    contacts = await fetch("SELECT * FROM contacts WHERE tenant = {}", company.tenant_id)
    assert len(contacts) == 5
    conversations = await fetch("SELECT * FROM conversations WHERE tenant = {}", company.tenant_id)
    assert len(conversations) == 5
    assert {c["last_message_at"] for c in conversations} == {_at(70 + j) for j in range(5)}
    rows = await fetch(
        "SELECT conversation, count(*) AS n FROM messages WHERE tenant = {} GROUP BY 1",
        company.tenant_id,
    )
    assert sorted(r["n"] for r in rows) == [8] * 5
    opened = await fetch(
        "SELECT conversation FROM events WHERE tenant = {} AND type = 'conversation.updated'",
        company.tenant_id,
    )
    assert sorted(r["conversation"] for r in opened) == sorted(c["id"] for c in conversations)


async def test_phone_less_sender_already_stored_creates_nothing(
    client, make_company, make_channel, post_webhook
):
    """A redelivered message of a username-only sender renames and creates nothing,
    even when its contact is gone."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    message = InboundMessage(
        provider_message_id="ig.1",
        sender=Sender(provider_user_id="IG.42", username="bia"),
        timestamp=BASE_TIME,
        type=MessageType.TEXT,
        text="oi",
    )
    await post_webhook(channel, [message])
    await fetch("DELETE FROM contacts WHERE tenant = {}", company.tenant_id)

    replay = await post_webhook(channel, [message])

    assert (await replay.json())["duplicates"] == 1
    assert await fetch("SELECT * FROM contacts WHERE tenant = {}", company.tenant_id) == []


async def test_new_conversations_of_a_batch_are_assigned_on_the_webhook_connection(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    agent = await company.add("agent")
    await fetch(
        "UPDATE memberships SET status = 'online' WHERE tenant = {} AND \"user\" = {}",
        company.tenant_id,
        agent.user_id,
    )
    channel = await make_channel(company.tenant_id)

    await post_webhook(
        channel,
        [text_message("a", phone="5511987653001"), text_message("b", phone="5511987653002")],
    )

    rows = await fetch(
        "SELECT status, assignee FROM conversations WHERE tenant = {}", company.tenant_id
    )
    assert rows == [{"status": "ACTIVE", "assignee": agent.user_id}] * 2


async def test_nobody_online_leaves_new_conversations_queued(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    await company.add("agent")  # offline
    channel = await make_channel(company.tenant_id)

    await post_webhook(channel, [text_message("a", phone="5511987653003")])

    rows = await fetch(
        "SELECT status, assignee, queued_at FROM conversations WHERE tenant = {}",
        company.tenant_id,
    )
    assert rows == [{"status": "PENDING", "assignee": None, "queued_at": BASE_TIME}]


async def test_a_released_connection_keeps_no_transaction(client):
    """Pooled connections skip asyncpg's reset query; an abandoned transaction is still
    rolled back before the connection is handed out again."""
    pool = client.server.app[SERVICES].db.pool
    conn = await pool.acquire()
    await conn.execute("BEGIN")
    await conn.execute("CREATE TABLE released_mid_transaction (id int)")
    await pool.release(conn)

    async with pool.acquire() as again:
        assert not again.is_in_transaction()
        assert await again.fetchval("SELECT to_regclass('released_mid_transaction')") is None


async def test_a_user_id_seen_with_a_phone_earlier_in_the_batch_is_that_contact(
    client, make_company, make_channel, post_webhook
):
    """As one message at a time: the first links the user id to the phone's contact,
    the phone-less second finds it there."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    with_phone = text_message("a", phone="5511987654000", user_id="BR.9", name="", at=_at(0))
    without = text_message("b", phone=None, user_id="BR.9", name="Duda", at=_at(1))

    resp = await post_webhook(channel, [without, with_phone])

    assert (await resp.json())["messages"] == 2
    contacts = await fetch("SELECT * FROM contacts WHERE tenant = {}", company.tenant_id)
    assert [(c["phone"], c["name"]) for c in contacts] == [("+5511987654000", "Duda")]
    identities = await fetch(
        "SELECT contact, provider_user_id FROM contact_identities WHERE tenant = {}",
        company.tenant_id,
    )
    assert identities == [{"contact": contacts[0]["id"], "provider_user_id": "BR.9"}]
    stored = await fetch(
        "SELECT DISTINCT conversation FROM messages WHERE tenant = {}", company.tenant_id
    )
    assert len(stored) == 1
