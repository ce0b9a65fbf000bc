"""Message ids carry their time (`guiche.foundation.message_ids`): every way in stamps them with the
message's `created_at`, and a lookup by id alone touches one chunk of the hypertable."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

from guiche.database import timescale
from guiche.foundation.message_ids import (
    created_at_filter,
    new_message_id,
    new_message_id_texts,
    time_window,
)
from guiche.media import attachments as media
from guiche.models import Message

from .conftest import fetch, send_text, settle

AT = dt.datetime(2026, 12, 5, 12, 34, 56, 789123, tzinfo=dt.UTC)


def test_an_id_names_the_millisecond_of_its_time() -> None:
    lo, hi = time_window(new_message_id(AT)) or (None, None)
    assert (lo, hi) == (AT.replace(microsecond=789000), AT.replace(microsecond=790000))
    assert new_message_id(AT).version == 7 and new_message_id(AT) != new_message_id(AT)
    assert time_window(uuid.uuid4()) is None  # ids made before carry no time
    assert new_message_id(dt.datetime(1960, 1, 1, tzinfo=dt.UTC)).version == 4
    assert created_at_filter(uuid.uuid4()) == ("", ())


def test_ids_made_in_bulk_are_laid_out_like_one_by_one() -> None:
    later = AT + dt.timedelta(days=400)
    texts = new_message_id_texts([AT] * 500 + [later, dt.datetime(1960, 1, 1, tzinfo=dt.UTC)])
    ids = [uuid.UUID(text) for text in texts]
    assert len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids[:-1])
    assert {time_window(i) for i in ids[:500]} == {time_window(new_message_id(AT))}
    assert time_window(ids[500]) == time_window(new_message_id(later))
    assert ids[-1].version == 4  # out of the 48-bit range: no time, as one by one


async def test_sql_and_python_stamp_ids_alike(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        made = await conn.fetchval("SELECT guiche_message_id($1)", AT)
        before_1970 = await conn.fetchval("SELECT guiche_message_id('1960-01-01Z')")
    finally:
        await conn.close()
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert time_window(made) == time_window(new_message_id(AT))
    assert before_1970.version == 4


async def test_webhook_and_agent_messages_carry_their_created_at(client: Any, start_chat: Any):
    chat = await start_chat(inbound_at=AT)
    resp = await send_text(client, chat)
    assert resp.status == 202, await resp.text()
    await settle(client)

    rows = await fetch(
        "SELECT id, created_at, direction FROM messages WHERE conversation = {}",
        chat.conversation_id,
    )
    assert sorted(r["direction"] for r in rows) == ["in", "out"]
    for row in rows:
        lo, hi = time_window(row["id"]) or (None, None)
        assert lo is not None and lo <= row["created_at"] < hi, row


async def test_a_reply_to_a_message_with_an_older_id_still_finds_it(client, start_chat):
    chat = await start_chat()
    [inbound] = await fetch(
        "SELECT * FROM messages WHERE conversation = {} AND direction = 'in'",
        chat.conversation_id,
    )
    older = uuid.uuid4()  # what ids were before they carried their time
    await Message.raw(
        "INSERT INTO messages (id, created_at, tenant, conversation, contact, channel,"
        " direction, body, provider_message_id, status)"
        " VALUES ({}, {}, {}, {}, {}, {}, 'in', 'antiga', 'wamid.older', 'received')",
        older,
        inbound["created_at"] - dt.timedelta(days=40),
        inbound["tenant"],
        chat.conversation_id,
        inbound["contact"],
        inbound["channel"],
    )

    resp = await client.post(
        chat.url,
        json={"type": "text", "text": "sobre aquela", "reply_to_message_id": str(older)},
        headers=chat.headers,
    )

    assert resp.status == 202, await resp.text()
    assert (await resp.json())["reply_to_id"] == str(older)


def _scanned_relations(plan: Any) -> list[str]:
    """Relations a plan (EXPLAIN ANALYZE, JSON) read at least once."""
    found = []
    if "Relation Name" in plan and plan.get("Actual Loops", 0) > 0:
        found.append(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found.extend(_scanned_relations(child))
    return found


async def test_a_lookup_by_id_reads_one_chunk(client: Any, start_chat: Any, database_url: str):
    """The attachment route's lookup: with the id's millisecond the hypertable reads one
    chunk, where the id alone reads every week's; plain PostgreSQL probes its primary key."""
    chat = await start_chat(inbound_at=AT)
    [inbound] = await fetch("SELECT * FROM messages WHERE conversation = {}", chat.conversation_id)
    for weeks in range(1, 5):  # the same conversation in four earlier weeks
        at = AT - dt.timedelta(weeks=weeks)
        await Message.raw(
            "INSERT INTO messages (id, created_at, tenant, conversation, channel, direction)"
            " VALUES ({}, {}, {}, {}, {}, 'in')",
            new_message_id(at),
            at,
            inbound["tenant"],
            chat.conversation_id,
            inbound["channel"],
        )
    at, window = created_at_filter(inbound["id"])
    args = (inbound["tenant"], inbound["id"], *window)
    conn = await asyncpg.connect(database_url)
    try:
        hypertable = await timescale.is_hypertable(conn)

        async def scanned(sql: str, *values: Any) -> list[str]:
            numbered = sql.format(*(f"${i}" for i in range(1, len(values) + 1)))
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {numbered}", *values)
            return _scanned_relations(json.loads(plan)[0]["Plan"])

        with_time = await scanned(media._MESSAGE + at, *args)
        by_id_alone = await scanned(media._MESSAGE, *args[:2])
    finally:
        await conn.close()
    assert len(with_time) == 1, with_time
    if hypertable:
        assert with_time[0].startswith("_hyper_")
        assert len(by_id_alone) >= 5, by_id_alone
    else:
        assert with_time == ["messages"]
    rows = await Message.raw(media._MESSAGE + at, *args)
    assert [r["id"] for r in rows] == [inbound["id"]]
