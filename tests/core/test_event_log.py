"""`guiche.plugin.read_events` / `settled_seq`: the public event-log reader."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from guiche.plugin import publish_event, read_events, settled_seq
from guiche.runtime.services import SERVICES


async def test_reads_only_the_tenants_events_in_order_with_type_filters(
    client: Any, make_company: Any
) -> None:
    services = client.app[SERVICES]
    mine, theirs = await make_company(), await make_company()
    conversation = uuid.uuid4()
    first = await publish_event(services, mine.tenant_id, "campaign.progress", {"n": 1})
    await publish_event(services, theirs.tenant_id, "campaign.progress", {"n": 99})
    await publish_event(
        services, mine.tenant_id, "campaign.done", {"n": 2}, conversation_id=conversation
    )
    await publish_event(services, mine.tenant_id, "bot.reply", {"n": 3})

    events = await read_events(services, mine.tenant_id, after=first.seq - 1)
    assert [e.data["n"] for e in events] == [1, 2, 3]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert events[1].conversation_id == conversation and events[1].type == "campaign.done"

    only = await read_events(services, mine.tenant_id, after=first.seq - 1, types=["campaign.*"])
    assert [e.data["n"] for e in only] == [1, 2]
    exact = await read_events(services, mine.tenant_id, after=first.seq - 1, types=["bot.reply"])
    assert [e.data["n"] for e in exact] == [3]
    # `_` is a literal in a prefix, not LIKE's wildcard
    assert await read_events(services, mine.tenant_id, after=0, types=["campaign_.*"]) == []
    assert await read_events(services, mine.tenant_id, after=0, types=[]) == []

    capped = await read_events(services, mine.tenant_id, after=first.seq - 1, limit=2)
    assert [e.data["n"] for e in capped] == [1, 2]
    until = await read_events(services, mine.tenant_id, after=first.seq - 1, until=first.seq)
    assert [e.data["n"] for e in until] == [1]
    assert [e.data["n"] for e in await read_events(services, theirs.tenant_id, after=0)] == [99]


async def test_settled_seq_waits_for_a_transaction_holding_an_earlier_seq(
    client: Any, make_company: Any, database_url: str
) -> None:
    """The gap a sequence leaves: seq N taken by an open transaction while N+1 commits.
    A cursor moved to N+1 would skip N forever; the settled horizon is not past N until
    that transaction ends."""
    services = client.app[SERVICES]
    company = await make_company()
    conn = await asyncpg.connect(database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        held = await conn.fetchval(
            "INSERT INTO events (tenant, type, data) VALUES ($1, 'test.held', '{}') RETURNING seq",
            company.tenant_id,
        )
        later = await publish_event(services, company.tenant_id, "test.later", {})
        assert later.seq > held
        assert await settled_seq(services, wait=0.2) is None  # still open: not settled

        waiting = asyncio.create_task(settled_seq(services, wait=5))
        await asyncio.sleep(0.1)
        await tx.commit()
        horizon = await waiting
        assert horizon is not None and horizon >= later.seq
        seen = await read_events(services, company.tenant_id, after=held - 1, until=horizon)
        assert [e.seq for e in seen] == [held, later.seq]
    finally:
        await conn.close()
    assert (await settled_seq(services)) is not None


async def test_a_transaction_with_the_newest_xid_is_waited_for(
    client: Any, make_company: Any, database_url: str
) -> None:
    """A snapshot lists only transactions below the newest *completed* xid: the one that
    got its xid last (nothing committed since) is in no `xip`, and must still be waited for."""
    services = client.app[SERVICES]
    company = await make_company()
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            held = await conn.fetchval(
                "INSERT INTO events (tenant, type, data) VALUES ($1, 'test.held', '{}')"
                " RETURNING seq",
                company.tenant_id,
            )
            assert held is not None
            assert await settled_seq(services, wait=0.2) is None
    finally:
        await conn.close()
    assert (await settled_seq(services)) >= held


async def test_a_cursor_below_the_settled_horizon_misses_nothing_under_concurrency(
    client: Any, make_company: Any
) -> None:
    """Eight writers commit in any order while a reader moves its cursor up to the
    settled horizon: every event below the cursor has been read."""
    services = client.app[SERVICES]
    company = await make_company()
    made: list[int] = []
    seen: list[int] = []
    stop = asyncio.Event()

    async def write() -> None:
        while not stop.is_set():
            made.append((await publish_event(services, company.tenant_id, "t.x", {})).seq)

    async def read() -> None:
        cursor = 0
        while not stop.is_set():
            horizon = await settled_seq(services)
            if horizon is None:
                continue
            events = await read_events(
                services, company.tenant_id, after=cursor, limit=1000, until=horizon
            )
            seen.extend(e.seq for e in events)
            cursor = events[-1].seq if len(events) == 1000 else max(cursor, horizon)

    tasks = [asyncio.create_task(write()) for _ in range(8)] + [asyncio.create_task(read())]
    await asyncio.sleep(2)
    stop.set()
    await asyncio.gather(*tasks)
    assert seen, "the reader read nothing"
    missed = sorted(seq for seq in set(made) - set(seen) if seq < max(seen))
    assert missed == []
    assert seen == sorted(seen) and len(seen) == len(set(seen))
