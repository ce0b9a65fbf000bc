"""The bulk history import (`guiche.plugin.import_history`): COPY-based, deduplicated
against everything already stored, contacts by phone or provider user id, per tenant."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from typing import Any

import orjson

from guiche import plugin
from guiche.channel_host.runtime import channel_row as load_channel
from guiche.channels import InboundMessage, MessageType, Sender
from guiche.foundation.message_ids import time_window
from guiche.inbound import bulk
from guiche.inbound.bulk import HISTORY_IMPORTED
from guiche.runtime.services import SERVICES
from tests.conftest import pool_plan_cache_modes

from .conftest import BASE_TIME, fetch, text_message


async def _row(channel: Any) -> Any:
    row = await load_channel(channel.id)
    assert row is not None
    return row


def _history(
    count: int, *, phone: str = "5511987654321", start: dt.datetime = BASE_TIME
) -> list[InboundMessage]:
    return [
        text_message(
            f"mensagem {n}",
            phone=phone,
            provider_id=f"hist-{phone}-{n}",
            at=start + dt.timedelta(minutes=n),
        )
        for n in range(count)
    ]


async def _count(table: str, tenant_id: uuid.UUID) -> int:
    rows = await fetch(f"SELECT count(*) AS n FROM {table} WHERE tenant = {{}}", tenant_id)
    return int(rows[0]["n"])


async def test_import_inserts_messages_into_one_closed_conversation_per_contact(
    client, make_company, make_channel
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    messages = _history(7) + _history(5, phone="5521998765432")
    services = client.app[SERVICES]

    result = await plugin.import_history(services, await _row(channel), messages, batch_size=4)

    assert (result.inserted, result.duplicates, result.conversations_created) == (12, 0, 2)
    conversations = await fetch(
        "SELECT c.*, k.phone FROM conversations c JOIN contacts k ON k.id = c.contact"
        " WHERE c.tenant = {} ORDER BY k.phone",
        company.tenant_id,
    )
    assert [(c["phone"], c["status"]) for c in conversations] == [
        ("+5511987654321", "CLOSED"),
        ("+5521998765432", "CLOSED"),
    ]
    first = conversations[0]
    assert first["opened_at"] == BASE_TIME
    assert (
        first["last_message_at"] == first["last_inbound_at"] == BASE_TIME + dt.timedelta(minutes=6)
    )
    assert first["assignee"] is None
    stored = await fetch(
        "SELECT * FROM messages WHERE conversation = {} ORDER BY created_at", first["id"]
    )
    assert [m["body"] for m in stored] == [f"mensagem {n}" for n in range(7)]
    assert stored[0]["payload"]["normalised"]["text"] == "mensagem 0"
    assert {m["status"] for m in stored} == {"received"}
    for message in stored:  # ids made in Python carry their message's time, like SQL's
        window = time_window(message["id"])
        assert window is not None and window[0] <= message["created_at"] < window[1]
    keys = await fetch(
        "SELECT message_id, message_created_at FROM message_keys WHERE channel = {}", channel.id
    )
    claimed = {(k["message_id"], k["message_created_at"]) for k in keys}
    assert {(m["id"], m["created_at"]) for m in stored} <= claimed  # each row is its key's
    assert await _count("message_keys", company.tenant_id) == 12


async def test_reimport_adds_nothing_and_emits_one_summary_event(
    client, make_company, make_channel
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    services = client.app[SERVICES]
    row = await _row(channel)
    received: list[Any] = []
    unsubscribe = services.bus.subscribe(received.append)
    try:
        first = await plugin.import_history(services, row, _history(30), batch_size=8)
        again = await plugin.import_history(services, row, _history(30), batch_size=8)
    finally:
        unsubscribe()

    assert (first.inserted, first.duplicates) == (30, 0)
    assert (again.inserted, again.duplicates, again.conversations_created) == (0, 30, 0)
    assert await _count("messages", company.tenant_id) == 30
    assert await _count("conversations", company.tenant_id) == 1
    assert [(e.type, e.data["inserted"]) for e in received] == [(HISTORY_IMPORTED, 30)]


async def test_the_outcome_maps_every_provider_id_to_its_conversation(
    client, make_company, make_channel
):
    """`ImportOutcome.conversations`: each imported provider id, duplicates included, to
    the conversation its sender's history is in (a cataloger maps chats with it)."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    services = client.app[SERVICES]
    row = await _row(channel)
    messages = _history(5) + _history(3, phone="5521998765432")
    first = await plugin.import_history(services, row, messages, batch_size=3)
    stored = await fetch(
        "SELECT provider_message_id, conversation FROM messages WHERE tenant = {}",
        company.tenant_id,
    )
    where = {m["provider_message_id"]: m["conversation"] for m in stored}
    assert dict(first.conversations) == where
    assert len(set(first.conversations.values())) == 2
    again = await plugin.import_history(services, row, messages[:2])
    assert again.duplicates == 2
    assert dict(again.conversations) == {
        m.provider_message_id: first.conversations[m.provider_message_id] for m in messages[:2]
    }


async def test_a_session_of_overlapping_calls_stores_each_once_and_announces_once(
    client, make_company, make_channel
):
    """`history_import`: calls overlap (their batches claim and write side by side),
    each returns its own counts once committed, a sender spread over calls keeps one
    conversation, and the session sends one `history.imported` event at its end."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    services = client.app[SERVICES]
    row = await _row(channel)
    ana, bia = _history(30), _history(12, phone="5521998765432")
    received: list[Any] = []
    unsubscribe = services.bus.subscribe(received.append)
    try:
        async with plugin.history_import(services, row, batch_size=4) as session:
            outcomes = await asyncio.gather(
                session.add(ana[:10] + bia[:6]),
                session.add(ana[10:] + bia[6:]),
                session.add(ana[5:15]),  # already in the first call
            )
            assert received == []  # nothing announced before the end
            total = session.total
    finally:
        unsubscribe()

    # the third call's messages are also in the first: whichever claims one first
    # stores it (their claims may run side by side), the other counts it a duplicate
    assert [o.inserted + o.duplicates for o in outcomes] == [16, 26, 10]
    assert outcomes[1].duplicates == 0
    assert sum(o.inserted for o in outcomes) == 42 and sum(o.duplicates for o in outcomes) == 10
    assert [o.conversations_created for o in outcomes] == [2, 0, 0]
    assert (total.inserted, total.duplicates, total.conversations_created) == (42, 10, 2)
    assert await _count("messages", company.tenant_id) == 42
    conversations = await fetch(
        "SELECT c.id, c.last_message_at, k.phone FROM conversations c"
        " JOIN contacts k ON k.id = c.contact WHERE c.tenant = {} ORDER BY k.phone",
        company.tenant_id,
    )
    assert [c["phone"] for c in conversations] == ["+5511987654321", "+5521998765432"]
    assert conversations[0]["last_message_at"] == BASE_TIME + dt.timedelta(minutes=29)
    where = {m: c for o in outcomes for m, c in o.conversations.items()}
    assert {where[m.provider_message_id] for m in ana} == {conversations[0]["id"]}
    assert {where[m.provider_message_id] for m in bia} == {conversations[1]["id"]}
    assert [(e.type, e.data["inserted"]) for e in received] == [(HISTORY_IMPORTED, 42)]


async def test_a_history_imported_newest_first_still_spans_its_conversation(
    client, make_company, make_channel
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    history = _history(9)

    await plugin.import_history(
        client.app[SERVICES], await _row(channel), history[::-1], batch_size=2
    )

    rows = await fetch("SELECT * FROM conversations WHERE tenant = {}", company.tenant_id)
    assert len(rows) == 1
    first, last = BASE_TIME, BASE_TIME + dt.timedelta(minutes=8)
    assert (rows[0]["opened_at"], rows[0]["created_at"]) == (first, first)
    assert (rows[0]["closed_at"], rows[0]["last_message_at"]) == (last, last)


async def test_messages_repeated_within_one_import_are_stored_once(
    client, make_company, make_channel
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    history = _history(5)

    result = await plugin.import_history(
        client.app[SERVICES], await _row(channel), history + history[:3], batch_size=6
    )

    assert (result.inserted, result.duplicates) == (5, 3)
    assert await _count("messages", company.tenant_id) == 5


async def test_big_batches_build_their_rows_off_the_event_loop(
    client, make_company, make_channel, monkeypatch
):
    """Rows of a batch of OFF_LOOP_ROWS or more are built in a worker thread (the loop
    keeps serving webhooks meanwhile); the keys go through the temporary table, and a
    second import of the same batch claims nothing."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    built_on: set[int] = set()
    real_row = bulk._row

    def spying_row(message: InboundMessage) -> Any:
        built_on.add(threading.get_ident())
        return real_row(message)

    monkeypatch.setattr(bulk, "_row", spying_row)
    history = _history(bulk.OFF_LOOP_ROWS)
    services = client.app[SERVICES]

    first = await plugin.import_history(services, await _row(channel), history)
    again = await plugin.import_history(services, await _row(channel), history)

    assert built_on and threading.main_thread().ident not in built_on
    assert (first.inserted, again.inserted, again.duplicates) == (len(history), 0, len(history))
    assert await _count("messages", company.tenant_id) == len(history)


async def test_overlapping_batches_in_flight_store_each_message_once(
    client, make_company, make_channel
):
    """Small batches written concurrently, each repeating ids of the batch before it."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    history = _history(20) + _history(12, phone="5521998765432")
    overlapping = history[:14] + history[7:24] + history[18:]

    result = await plugin.import_history(
        client.app[SERVICES], await _row(channel), overlapping, batch_size=3
    )

    assert (result.inserted, result.duplicates) == (32, len(overlapping) - 32)
    rows = await fetch(
        "SELECT count(*) AS n, count(DISTINCT provider_message_id) AS ids,"
        " count(DISTINCT conversation) AS conversations FROM messages WHERE tenant = {}",
        company.tenant_id,
    )
    assert (rows[0]["n"], rows[0]["ids"], rows[0]["conversations"]) == (32, 32, 2)


async def test_a_key_another_transaction_stores_meanwhile_is_skipped_not_failed(
    client, make_company, make_channel
):
    """A key that another transaction (a live webhook) is storing when a batch claims it
    makes the claim wait; once that commits, the batch skips the key (a duplicate) and
    stores the rest, instead of failing the import."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    services = client.app[SERVICES]
    history = _history(5)
    live = await services.db.get_new_connection()
    watcher = await services.db.get_new_connection()
    try:
        transaction = live.transaction()
        await transaction.start()
        await live.execute(
            "INSERT INTO message_keys (channel, provider_message_id, tenant, message_id,"
            " message_created_at) VALUES ($1, $2, $3, gen_random_uuid(), $4)",
            channel.id,
            history[2].provider_message_id,
            company.tenant_id,
            BASE_TIME,
        )
        importing = asyncio.create_task(
            plugin.import_history(services, await _row(channel), history)
        )
        for _ in range(200):  # until the claim waits for the live transaction
            if await watcher.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
                break
            await asyncio.sleep(0.025)
        else:
            raise AssertionError("the claim never waited for the live key")
        assert not importing.done()
        await transaction.commit()
        result = await asyncio.wait_for(importing, 10)
    finally:
        await live.close()
        await watcher.close()

    assert (result.inserted, result.duplicates) == (4, 1)
    rows = await fetch(
        "SELECT provider_message_id FROM messages WHERE tenant = {} ORDER BY created_at",
        company.tenant_id,
    )
    assert [r["provider_message_id"] for r in rows] == [
        m.provider_message_id for m in history if m is not history[2]
    ]


async def test_messages_already_ingested_by_webhook_are_deduplicated_and_join_its_conversation(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    history = _history(6)
    resp = await post_webhook(channel, history[4:])  # the two newest came in live
    assert resp.status == 200, await resp.text()
    live = await fetch("SELECT * FROM conversations WHERE tenant = {}", company.tenant_id)

    result = await plugin.import_history(client.app[SERVICES], await _row(channel), history)

    assert (result.inserted, result.duplicates, result.conversations_created) == (4, 2, 0)
    rows = await fetch(
        "SELECT conversation, count(*) AS n FROM messages WHERE tenant = {} GROUP BY 1",
        company.tenant_id,
    )
    assert [(r["conversation"], r["n"]) for r in rows] == [(live[0]["id"], 6)]
    after = await fetch("SELECT * FROM conversations WHERE id = {}", live[0]["id"])
    assert after[0]["status"] == live[0]["status"]  # the open conversation stays as it was
    assert after[0]["last_message_at"] == live[0]["last_message_at"]


async def test_contacts_by_phone_reuse_existing_ones_and_keep_their_names(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    await post_webhook(channel, [text_message(name="Ana Cadastrada")])
    # Brazilian mobile without the ninth digit: the same line as +5531988887777
    history = [
        text_message(phone="5511987654321", name="Outro Nome", at=BASE_TIME),
        text_message(phone="553188887777", name="Bruno", at=BASE_TIME),
        text_message(phone="5531988887777", name="", at=BASE_TIME + dt.timedelta(seconds=1)),
    ]

    result = await plugin.import_history(client.app[SERVICES], await _row(channel), history)

    assert result.inserted == 3
    contacts = await fetch(
        "SELECT phone, name FROM contacts WHERE tenant = {} ORDER BY phone", company.tenant_id
    )
    assert [(c["phone"], c["name"]) for c in contacts] == [
        ("+5511987654321", "Ana Cadastrada"),
        ("+5531988887777", "Bruno"),
    ]


async def test_contacts_by_provider_user_id_without_a_phone(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    await post_webhook(channel, [text_message(phone=None, user_id="BR.known", name="")])

    def by_user(user_id: str, name: str, n: int, **sender: Any) -> InboundMessage:
        return InboundMessage(
            provider_message_id=f"user-{user_id}-{n}",
            sender=Sender(provider_user_id=user_id, name=name, **sender),
            timestamp=BASE_TIME + dt.timedelta(minutes=n),
            type=MessageType.TEXT,
            text=f"oi {n}",
        )

    history = [
        by_user("BR.known", "Carla", 1),
        by_user("BR.new", "Davi", 2, username="davi"),
        by_user("BR.new", "Davi", 3, username="davi"),
        text_message(phone="5511912345678", user_id="BR.phone", name="Eva", provider_id="p-1"),
    ]
    result = await plugin.import_history(client.app[SERVICES], await _row(channel), history)

    assert result.inserted == 4
    identities = await fetch(
        "SELECT i.provider_user_id, c.name, c.phone, c.custom_fields FROM contact_identities i"
        " JOIN contacts c ON c.id = i.contact WHERE i.tenant = {} ORDER BY 1",
        company.tenant_id,
    )
    assert [(i["provider_user_id"], i["name"], i["phone"]) for i in identities] == [
        ("BR.known", "Carla", None),  # the webhook's contact, its empty name filled
        ("BR.new", "Davi", None),
        ("BR.phone", "Eva", "+5511912345678"),
    ]
    assert orjson.loads(identities[1]["custom_fields"]) == {"username": "davi"}
    assert await _count("contacts", company.tenant_id) == 3
    per_contact = await fetch(
        "SELECT contact, count(DISTINCT conversation) AS n FROM messages WHERE tenant = {}"
        " GROUP BY contact",
        company.tenant_id,
    )
    assert all(r["n"] == 1 for r in per_contact) and len(per_contact) == 3


async def test_import_is_scoped_to_the_channels_tenant(client, make_company, make_channel):
    ours, theirs = await make_company(), await make_company()
    our_channel = await make_channel(ours.tenant_id)
    their_channel = await make_channel(theirs.tenant_id)
    services = client.app[SERVICES]
    history = _history(4)  # same phone and same provider ids in both companies

    mine = await plugin.import_history(services, await _row(our_channel), history)
    other = await plugin.import_history(services, await _row(their_channel), history)

    assert mine.inserted == other.inserted == 4
    for company, channel in ((ours, our_channel), (theirs, their_channel)):
        rows = await fetch(
            "SELECT DISTINCT m.channel, m.contact, c.tenant AS contact_tenant,"
            " v.tenant AS conversation_tenant FROM messages m"
            " JOIN contacts c ON c.id = m.contact JOIN conversations v ON v.id = m.conversation"
            " WHERE m.tenant = {}",
            company.tenant_id,
        )
        assert len(rows) == 1
        assert rows[0]["channel"] == channel.id
        assert rows[0]["contact_tenant"] == rows[0]["conversation_tenant"] == company.tenant_id


async def test_replies_point_at_their_targets_and_own_messages_are_outbound(
    client, make_company, make_channel
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    question = text_message("pergunta", provider_id="q-1", at=BASE_TIME)
    answer = InboundMessage(
        provider_message_id="a-1",
        sender=Sender(phone="5511987654321"),
        timestamp=BASE_TIME + dt.timedelta(minutes=1),
        type=MessageType.TEXT,
        text="resposta",
        from_me=True,
        reply_to_provider_message_id="q-1",
    )

    await plugin.import_history(client.app[SERVICES], await _row(channel), [answer, question])

    rows = await fetch(
        "SELECT id, provider_message_id, direction, status, reply_to FROM messages"
        " WHERE tenant = {} ORDER BY created_at",
        company.tenant_id,
    )
    assert [(r["provider_message_id"], r["direction"], r["status"]) for r in rows] == [
        ("q-1", "in", "received"),
        ("a-1", "out", "sent"),
    ]
    assert rows[1]["reply_to"] == rows[0]["id"]
    conversation = await fetch("SELECT * FROM conversations WHERE tenant = {}", company.tenant_id)
    assert conversation[0]["last_inbound_at"] == BASE_TIME
    assert conversation[0]["last_message_at"] == BASE_TIME + dt.timedelta(minutes=1)


async def test_a_rerun_moves_the_conversation_times_a_killed_import_left_behind(
    client, make_company, make_channel
):
    """A session killed after its messages committed but before it wrote its
    conversations' times (it writes them every so many conversations and at its end)
    leaves them behind; running the import again finds only duplicates and still moves
    the times forward to cover them."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    services = client.app[SERVICES]
    row = await _row(channel)
    await plugin.import_history(services, row, _history(10), batch_size=4)
    await fetch(  # what the killed session left: messages stored, times not written
        "UPDATE conversations SET last_message_at = {}, last_inbound_at = {} WHERE tenant = {}",
        BASE_TIME,
        BASE_TIME,
        company.tenant_id,
    )

    again = await plugin.import_history(services, row, _history(10), batch_size=4)

    assert (again.inserted, again.duplicates) == (0, 10)
    [conversation] = await fetch(
        "SELECT last_message_at, last_inbound_at FROM conversations WHERE tenant = {}",
        company.tenant_id,
    )
    last = BASE_TIME + dt.timedelta(minutes=9)
    assert conversation["last_message_at"] == conversation["last_inbound_at"] == last


async def test_key_checks_keep_generic_plans_in_the_batch_only(
    client, make_company, make_channel, monkeypatch
):
    """A batch's claim and COPY run with `plan_cache_mode = auto` (its foreign-key checks
    are not planned again for every row, as the pool's `force_custom_plan` would have
    them); the setting is the transaction's own, so the pooled connection goes back to
    the pool with the pool's mode."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    services = client.app[SERVICES]
    modes: list[str] = []
    real_copy = bulk._Importer._copy

    async def spying_copy(self: Any, claim: Any, rows: Any, targets: Any) -> None:
        modes.append(await claim.conn.fetchval("SHOW plan_cache_mode"))
        await real_copy(self, claim, rows, targets)

    monkeypatch.setattr(bulk._Importer, "_copy", spying_copy)

    result = await plugin.import_history(services, await _row(channel), _history(6), batch_size=2)

    assert result.inserted == 6
    assert modes == ["auto"] * 3
    assert await pool_plan_cache_modes(services.db.pool) == {"force_custom_plan"}


def test_the_payload_document_is_the_normalised_message_and_the_raw_one() -> None:
    """Webhook ingest and the import store one document shape: the message in JSON mode
    without nulls (its raw part apart), and the provider's raw message as it came."""
    from guiche.channels import Media
    from guiche.inbound.store import payload_document

    message = text_message("olá", provider_id="wamid.1")
    image = InboundMessage(
        provider_message_id="wamid.2",
        sender=Sender(phone="5511987654321"),
        timestamp=BASE_TIME,
        type=MessageType.IMAGE,
        media=Media(provider_media_id="m1", mime_type="image/jpeg", caption="foto"),
        raw={"image": {"id": "m1", "nested": [1, {"a": None}]}},
    )

    for each in (message, image):
        document = orjson.loads(payload_document(each))
        assert document == {
            "normalised": each.model_dump(mode="json", exclude={"raw"}, exclude_none=True),
            "raw": each.raw,
        }
    assert "raw" not in orjson.loads(payload_document(image))["normalised"]


async def test_unstorable_text_is_cleaned_not_fatal_live_and_in_bulk(
    client, make_company, make_channel, post_webhook
):
    """Postgres text and jsonb hold no NUL and UTF-8 no lone surrogate: a provider's stray
    one would fail the whole batch (a catalog stuck on one page for good)."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    live = text_message("bom\x00 dia", phone="5511987654321", name="A\x00na")
    live.raw["extra"] = {"k\x00": ["v\x00"]}
    history = _history(3, phone="5521998765432")
    history[1] = text_message(
        "tudo\x00 certo", phone="5521998765432", provider_id="hist-nul", at=history[1].timestamp
    )
    history[2] = text_message(
        "meio \ud800 par", phone="5521998765432", provider_id="hist-sur", at=history[2].timestamp
    )

    resp = await post_webhook(channel, [live])
    assert resp.status == 200, await resp.text()
    result = await plugin.import_history(client.app[SERVICES], await _row(channel), history)

    assert result.inserted == 3
    rows = await fetch(
        "SELECT body, payload::text AS doc FROM messages WHERE tenant = {} ORDER BY body",
        company.tenant_id,
    )
    bodies = [row["body"] for row in rows]
    assert "bom dia" in bodies and "tudo certo" in bodies and "meio \ufffd par" in bodies
    assert all("\\u0000" not in row["doc"] for row in rows)
    live_payload = next(orjson.loads(r["doc"]) for r in rows if r["body"] == "bom dia")
    assert live_payload["raw"]["extra"] == {"k": ["v"]}
    names = await fetch("SELECT name FROM contacts WHERE tenant = {}", company.tenant_id)
    assert "Ana" in [row["name"] for row in names]
