"""A database blip right after the provider accepted a send: the settle is retried.

The blip is real: while the worker's settle statement waits on the provider id's
advisory lock (held here from another connection), its backend is terminated, as a
Postgres restart or a failover would. Within the lease the retry settles the send
once; past the lease the next holder finds the send in doubt and does not repeat it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from guiche.channels import OutboundMessage
from guiche.database.engine import database_unavailable
from guiche.inbound.early_statuses import lock_name
from guiche.outbound import outbox, sender
from guiche.outbound.sender import send_message
from guiche.outbound.sweeper import sweep_outbox

from .conftest import Chat, fetch, message_row, send_text, sent_ids, services_of_client, settle

WAIT = 15.0

_SETTLE_WAITING = """
SELECT pid FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND wait_event_type = 'Lock'
  AND query LIKE '%guiche_settle_sent%'
"""


@pytest.fixture
async def blip(database_url: str) -> AsyncIterator[Callable[[Any, Chat], None]]:
    """`arm(plugin, chat)`: the next send the provider accepts has its settle's database
    connection terminated mid-statement. `killed` lists the backends terminated."""
    helpers: list[asyncio.Task[None]] = []

    def arm(plugin: Any, chat: Chat) -> None:
        async def on_send(message: OutboundMessage, provider_message_id: str) -> None:
            plugin.provider.on_send = None
            blocker = await asyncpg.connect(database_url)
            key = lock_name(chat.channel.id, provider_message_id)
            await blocker.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
            helpers.append(asyncio.create_task(_terminate_settle(blocker, key)))

        plugin.provider.on_send = on_send

    yield arm
    for task in helpers:
        await asyncio.wait_for(task, WAIT)


async def _terminate_settle(blocker: asyncpg.Connection, key: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while True:  # until the settle waits on the lock
                pids = [row["pid"] for row in await blocker.fetch(_SETTLE_WAITING)]
                if pids:
                    break
                await asyncio.sleep(0.01)
        for pid in pids:
            await blocker.execute("SELECT pg_terminate_backend($1)", pid)
        await blocker.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
    finally:
        await blocker.close()


def _logged(caplog: pytest.LogCaptureFixture, message: str) -> int:
    return sum(1 for record in caplog.records if record.getMessage() == message)


async def test_settle_is_retried_after_the_connection_drops(
    client, start_chat, fake_plugin, blip, caplog
):
    chat = await start_chat()
    services = services_of_client(client)
    blip(fake_plugin, chat)

    created = await (await send_text(client, chat)).json()
    await settle(client)

    assert _logged(caplog, "database away, retrying") >= 1  # the blip did happen
    assert sent_ids(fake_plugin) == [created["id"]]
    stored = await message_row(created["id"])
    assert stored["status"] == "sent"
    assert not await fetch("SELECT 1 FROM message_outbox WHERE message_id = {}", stored["id"])
    events = await fetch(
        "SELECT data FROM events WHERE conversation = {} AND type = 'message.status'",
        chat.conversation_id,
    )
    assert [e["data"]["status"] for e in events] == ["sent"]
    assert await send_message(created["id"], services=services) == "skipped"
    assert sent_ids(fake_plugin) == [created["id"]]


async def test_settle_failing_past_the_lease_is_not_sent_again(
    client, start_chat, fake_plugin, blip, monkeypatch, caplog
):
    """The database stays away longer than the lease: the worker gives up its settle and
    the next holder marks the message `unknown` rather than sending it again."""
    monkeypatch.setattr(outbox, "LEASE_SAFETY_SECONDS", sender.LEASE_MARGIN_SECONDS + 3600)
    chat = await start_chat()
    services = services_of_client(client)
    blip(fake_plugin, chat)

    created = await (await send_text(client, chat)).json()
    await settle(client)

    assert _logged(caplog, "database still away, giving up") == 1
    assert sent_ids(fake_plugin) == [created["id"]]
    message_id = uuid.UUID(created["id"])
    assert (await message_row(message_id))["status"] == "pending"
    await fetch(
        "UPDATE message_outbox SET locked_until = now() - interval '1 second',"
        " next_attempt_at = now() - interval '1 hour' WHERE message_id = {}",
        message_id,
    )  # the lease ends
    assert await sweep_outbox(services=services) >= 1
    await settle(client)

    assert sent_ids(fake_plugin) == [created["id"]]
    assert (await message_row(message_id))["status"] == "unknown"


def test_disconnects_are_told_from_statement_errors() -> None:
    assert database_unavailable(asyncpg.ConnectionDoesNotExistError("closed mid-operation"))
    assert database_unavailable(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert database_unavailable(asyncpg.AdminShutdownError("terminating connection"))
    assert database_unavailable(asyncpg.TooManyConnectionsError("too many clients"))
    assert database_unavailable(ConnectionRefusedError(111, "refused"))
    assert database_unavailable(asyncpg.InterfaceError("connection is closed"))
    assert not database_unavailable(asyncpg.UniqueViolationError("duplicate key"))
    assert not database_unavailable(asyncpg.InterfaceError("another operation is in progress"))
    assert not database_unavailable(ValueError("bad"))
