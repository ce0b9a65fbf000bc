"""Ingest transactions that fail for a retryable reason are run again, not answered 5xx.

Each test builds a real deadlock with a second connection (`blocker`) whose own
`deadlock_timeout` is long, so Postgres always picks the ingest's transaction as the
victim: without the retry the webhook answers 500 and the import raises.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from guiche import plugin
from guiche.channel_host.runtime import channel_row as load_channel
from guiche.database.engine import is_retryable, retrying
from guiche.runtime.services import SERVICES

from .conftest import fetch, text_message

LOCK_WAIT_TIMEOUT = 10.0


@pytest.fixture
async def blocker(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("BEGIN")
        await conn.execute("SET LOCAL deadlock_timeout = '60s'")  # never the victim
        yield conn
    finally:
        await conn.close()


async def wait_for_lock_wait(
    conn: asyncpg.Connection, query_like: str, *, waiting: int = 1
) -> None:
    """Until `waiting` backends of this database wait on a lock while running `query_like`.

    Polled (the other backend is not ours to signal); `pg_stat_clear_snapshot()` because
    `conn` is inside a transaction, where the activity view is a snapshot otherwise."""
    async with asyncio.timeout(LOCK_WAIT_TIMEOUT):
        while True:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            if (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query ILIKE $1 AND pid <> pg_backend_pid()",
                    query_like,
                )
                >= waiting
            ):
                return
            await asyncio.sleep(0.02)


async def claim_key(conn: asyncpg.Connection, channel: Any, provider_id: str) -> None:
    await conn.execute(
        "INSERT INTO message_keys (channel, provider_message_id, tenant, message_id,"
        " message_created_at) VALUES ($1, $2, $3, gen_random_uuid(), now())",
        channel.id,
        provider_id,
        channel.tenant_id,
    )


async def test_a_webhook_deadlocked_with_another_transaction_is_stored_on_retry(
    client, make_company, make_channel, post_webhook, blocker, caplog
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    assert (await post_webhook(channel, [text_message("primeira")])).status == 200
    contact = (await fetch("SELECT id FROM contacts WHERE tenant = {}", company.tenant_id))[0]
    second = text_message("segunda")
    # The blocker holds the contact the webhook will upsert ...
    await blocker.execute("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", contact["id"])
    caplog.set_level(logging.WARNING, logger="guiche.database.engine")

    posting = asyncio.create_task(post_webhook(channel, [second]))
    await wait_for_lock_wait(blocker, "%guiche_ingest_messages%")
    # ... and now wants the key the webhook's transaction claimed first: a deadlock.
    await claim_key(blocker, channel, second.provider_message_id)
    await blocker.execute("ROLLBACK")
    resp = await posting

    assert resp.status == 200, await resp.text()
    assert (await resp.json())["messages"] == 1
    stored = await fetch(
        "SELECT body FROM messages WHERE tenant = {} ORDER BY created_at, body", company.tenant_id
    )
    assert [m["body"] for m in stored] == ["primeira", "segunda"]
    assert any("webhook ingest: retrying" in r.getMessage() for r in caplog.records)


async def test_a_history_claim_deadlocked_with_another_transaction_is_retried(
    client, make_company, make_channel, blocker, caplog
):
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    row = await load_channel(channel.id)
    assert row is not None
    prefix = uuid.uuid4().hex  # one prefix: the claim inserts keys in key order, m1 first
    history = [text_message(f"m{n}", provider_id=f"claim-{prefix}-{n}") for n in (1, 2)]
    first, second = (m.provider_message_id for m in history)
    await claim_key(blocker, channel, second)  # the import claims `first`, then waits here
    caplog.set_level(logging.WARNING, logger="guiche.database.engine")

    importing = asyncio.create_task(
        plugin.import_history(client.app[SERVICES], row, history, batch_size=10)
    )
    await wait_for_lock_wait(blocker, "%INSERT INTO message_keys%")
    await claim_key(blocker, channel, first)  # waits for the import: a deadlock
    await blocker.execute("ROLLBACK")
    result = await importing

    assert (result.inserted, result.duplicates) == (2, 0)
    stored = await fetch("SELECT count(*) AS n FROM messages WHERE tenant = {}", company.tenant_id)
    assert stored == [{"n": 2}]
    assert any("history import claim: retrying" in r.getMessage() for r in caplog.records)


async def test_session_calls_claiming_the_same_keys_in_opposite_orders_never_deadlock(
    client, make_company, make_channel, blocker, caplog
):
    """A session's batches claim side by side, each inserting its keys in key order.
    Unsorted, this is a deadlock: the blocker holds the middle key, one call claims
    upwards to it, the other downwards to it, and once the blocker lets go each wants
    what the other holds. Sorted, the second call waits for the first and finds its
    messages stored."""
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    row = await load_channel(channel.id)
    assert row is not None
    prefix = uuid.uuid4().hex
    history = [text_message(f"m{n}", provider_id=f"order-{prefix}-{n:03d}") for n in range(100)]
    await claim_key(blocker, channel, history[50].provider_message_id)
    caplog.set_level(logging.WARNING, logger="guiche.database.engine")

    async with plugin.history_import(client.app[SERVICES], row, batch_size=100) as session:
        calls = asyncio.gather(session.add(history), session.add(history[::-1]))
        await wait_for_lock_wait(blocker, "%INSERT INTO message_keys%", waiting=2)
        await blocker.execute("ROLLBACK")
        outcomes = await calls

    assert sorted((o.inserted, o.duplicates) for o in outcomes) == [(0, 100), (100, 0)]
    stored = await fetch("SELECT count(*) AS n FROM messages WHERE tenant = {}", company.tenant_id)
    assert stored == [{"n": 100}]
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


async def test_a_history_copy_deadlocked_with_another_transaction_is_claimed_and_copied_again(
    client, make_company, make_channel, blocker, caplog
):
    """The COPY's wait is its foreign-key check on the conversation, which only plain
    PostgreSQL has (the hypertable has no foreign keys: nothing there to deadlock on)."""
    has_fk = await blocker.fetchval(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'messages'::regclass AND contype = 'f'"
    )
    if not has_fk:
        pytest.skip("messages has no foreign keys here (TimescaleDB): the COPY waits on nothing")
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    row = await load_channel(channel.id)
    assert row is not None
    services = client.app[SERVICES]
    phone = "5511987654321"
    await plugin.import_history(services, row, [text_message("antes", phone=phone)])
    conversation = (await fetch("SELECT id FROM conversations WHERE tenant = {}", row.tenant_id))[0]
    history = [text_message(f"m{n}", phone=phone) for n in (1, 2)]
    # The blocker holds the conversation the COPY's foreign-key check must share-lock ...
    await blocker.execute(
        "SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", conversation["id"]
    )
    caplog.set_level(logging.WARNING, logger="guiche.database.engine")

    importing = asyncio.create_task(plugin.import_history(services, row, history))
    await wait_for_lock_wait(blocker, "%COPY%messages%")
    # ... and now wants a key the batch's transaction claimed: a deadlock.
    await claim_key(blocker, channel, history[0].provider_message_id)
    await blocker.execute("ROLLBACK")
    result = await importing

    assert (result.inserted, result.duplicates) == (2, 0)
    bodies = await fetch(
        "SELECT body FROM messages WHERE tenant = {} ORDER BY body", company.tenant_id
    )
    assert [m["body"] for m in bodies] == ["antes", "m1", "m2"]
    assert any("history import batch: retrying" in r.getMessage() for r in caplog.records)


class _Failure(asyncpg.PostgresError):
    pass


def _error(sqlstate: str) -> asyncpg.PostgresError:
    exc = _Failure("boom")
    exc.sqlstate = sqlstate
    return exc


def test_retryable_errors_are_transaction_rollbacks_and_lock_timeouts():
    assert is_retryable(asyncpg.DeadlockDetectedError("x"))
    assert is_retryable(asyncpg.SerializationError("x"))
    assert is_retryable(_error("55P03"))
    assert not is_retryable(asyncpg.UniqueViolationError("x"))
    assert not is_retryable(ValueError("x"))


async def test_retrying_gives_up_after_its_attempts_and_raises_other_errors_at_once():
    calls: list[int] = []

    async def deadlocks() -> None:
        calls.append(1)
        raise asyncpg.DeadlockDetectedError("deadlock detected")

    with pytest.raises(asyncpg.DeadlockDetectedError):
        await retrying(deadlocks, what="test", attempts=3)
    assert len(calls) == 3

    async def violates() -> None:
        calls.append(1)
        raise asyncpg.UniqueViolationError("duplicate")

    calls.clear()
    with pytest.raises(asyncpg.UniqueViolationError):
        await retrying(violates, what="test")
    assert len(calls) == 1
