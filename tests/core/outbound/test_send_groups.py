"""Send batching (`guiche.outbound.groups`, `service.kick_send`): concurrent sends share
their claim and settle statements and their task, and stay each its own: every message
is sent once or visibly failed, with its own `message.status` event, and one failure in
a group (the provider's, or the database refusing one settle) leaves its neighbours
sent."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from guiche.channels import PermanentSendError
from guiche.inbound.early_statuses import lock_name
from guiche.outbound.groups import groups_for
from guiche.outbound.sender import send_message
from guiche.outbound.service import KICK_GROUP, SEND_TASK, kick_sends

from .conftest import Chat, fetch, message_row, send_text, sent_ids, services_of_client, settle


class Kicks:
    """A task queue that records kicks instead of running them."""

    def __init__(self) -> None:
        self.fired: list[tuple[str, Any]] = []

    async def kick(self, name: str, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("sends are fired, never kicked")

    async def fire(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.fired.append((name, args[0]))


async def _pending(client: Any, chat: Chat, count: int) -> tuple[list[str], Kicks]:
    """`count` messages created concurrently through the API, their kicks held back."""
    services = services_of_client(client)
    real, kicks = services.tasks, Kicks()
    services.tasks = kicks  # type: ignore[assignment]
    try:
        responses = await asyncio.gather(
            *(send_text(client, chat, f"mensagem {n}") for n in range(count))
        )
    finally:
        services.tasks = real
    created = [(await response.json())["id"] for response in responses]
    assert all(response.status == 202 for response in responses)
    return created, kicks


async def _status_events(message_id: str) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT data FROM events WHERE type = 'message.status' AND data->>'id' = {}",
        message_id,
    )


async def test_concurrent_kicks_share_a_task_and_its_sends_share_statements(
    client, start_chat, fake_plugin
):
    chat = await start_chat()
    ids, kicks = await _pending(client, chat, 12)
    # the kicks of concurrent requests travel together: fewer entries than messages
    carried = [ids_ for _, ids_ in kicks.fired]
    assert all(name == SEND_TASK for name, _ in kicks.fired)
    flat = [one for entry in carried for one in ([entry] if isinstance(entry, str) else entry)]
    assert sorted(flat) == sorted(ids)

    services = services_of_client(client)
    groups = groups_for(services)
    outcomes = await send_message([*ids, ids[0]], services=services)  # one id twice

    assert sorted(outcomes) == ["sent"] * 12 + ["skipped"]
    assert sorted(sent_ids(fake_plugin)) == sorted(ids)  # each exactly once
    assert groups.claims.stats.largest == 13  # one claim statement for the whole task
    assert groups.settles.stats.items == 12
    for message_id in ids:
        row = await message_row(message_id)
        assert (row["status"], row["provider_message_id"] is not None) == ("sent", True)
        [event] = await _status_events(message_id)
        assert event["data"]["status"] == "sent"
    assert not await fetch(
        "SELECT 1 FROM message_outbox WHERE message_id = ANY({})", [uuid.UUID(i) for i in ids]
    )


async def test_one_failed_send_does_not_fail_its_neighbours(client, start_chat, fake_plugin):
    chat = await start_chat()
    ids, _ = await _pending(client, chat, 6)
    fake_plugin.provider.fail_next(PermanentSendError("no such recipient", code="bad_number"))

    outcomes = await send_message(ids, services=services_of_client(client))

    assert sorted(outcomes) == ["failed"] + ["sent"] * 5
    statuses = sorted([(await message_row(message_id))["status"] for message_id in ids])
    assert statuses == ["failed"] + ["sent"] * 5
    assert len(sent_ids(fake_plugin)) == 5
    for message_id in ids:
        assert len(await _status_events(message_id)) == 1


async def test_a_settle_the_database_refuses_fails_alone(client, start_chat, fake_plugin):
    chat = await start_chat()
    ids, _ = await _pending(client, chat, 3)
    services = services_of_client(client)
    groups = groups_for(services)
    rows = [await message_row(message_id) for message_id in ids]
    for row in rows:
        assert await groups.claim(row["id"], 60.0) is not None

    def args(row: dict[str, Any], channel: uuid.UUID) -> tuple[Any, ...]:
        pid = f"fake.{uuid.uuid4().hex}"
        return (
            row["id"],
            row["created_at"],
            "sent",
            pid,
            channel,
            chat.company.tenant_id,
            lock_name(channel, pid),
            chat.conversation_id,
            None,
            None,
            '{"status": "sent"}',
        )

    nowhere = uuid.uuid4()  # no such channel: its key cannot be stored
    answers = await asyncio.gather(
        groups.settle_sent(*args(rows[0], chat.channel.id)),
        groups.settle_sent(*args(rows[1], nowhere)),
        groups.settle_sent(*args(rows[2], chat.channel.id)),
        return_exceptions=True,
    )

    assert answers[0]["outcome"] == answers[2]["outcome"] == "sent"
    assert isinstance(answers[1], asyncpg.ForeignKeyViolationError)
    assert [(await message_row(i))["status"] for i in ids] == ["sent", "pending", "sent"]
    left = await fetch(
        "SELECT message_id FROM message_outbox WHERE message_id = ANY({})", [r["id"] for r in rows]
    )
    assert [r["message_id"] for r in left] == [rows[1]["id"]]


async def test_a_claim_whose_sender_is_gone_is_released_clean(client, start_chat, fake_plugin):
    """Cancelled before its claim came back (a worker stopping): nothing was sent, so the
    next holder sends it instead of marking it `unknown`."""
    chat = await start_chat()
    [message_id], _ = await _pending(client, chat, 1)
    services = services_of_client(client)
    claims = groups_for(services).claims
    claiming = asyncio.create_task(claims.submit((uuid.UUID(message_id), 60.0)))
    await asyncio.sleep(0)  # submitted; the statement has not answered yet
    claiming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claiming
    await claims.wait_idle()  # the statement answers after all: its claim is nobody's
    await settle(client)  # and the release spawned for it is done
    [row] = await fetch("SELECT * FROM message_outbox WHERE message_id = {}", uuid.UUID(message_id))
    assert row["lock_token"] is None and row["attempts"] == row["released_attempts"] == 1

    assert await send_message(message_id, services=services) == "sent"
    assert sent_ids(fake_plugin) == [message_id]


async def test_the_sweeper_kicks_many_ids_per_task(client, start_chat):
    services = services_of_client(client)
    real, kicks = services.tasks, Kicks()
    services.tasks = kicks  # type: ignore[assignment]
    try:
        ids = [uuid.uuid4() for _ in range(KICK_GROUP + 3)]
        await kick_sends(services, ids)
    finally:
        services.tasks = real
    assert [len(entry) for _, entry in kicks.fired] == [KICK_GROUP, 3]
    assert [uuid.UUID(one) for _, entry in kicks.fired for one in entry] == ids
