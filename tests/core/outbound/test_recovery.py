"""The outbox recovers a send whose worker vanished after claiming it, and sends it once.

In-process: a claim abandoned by a "dead" worker blocks everyone until its lease ends;
then the sweeper hands the row to a live worker. test_worker_crash.py does the same
with a real worker process killed mid-send.
"""

from __future__ import annotations

import uuid

from guiche.channels import RetryableSendError
from guiche.outbound import outbox
from guiche.outbound.sender import send_message
from guiche.outbound.sweeper import sweep_outbox

from .conftest import fetch, message_row, send_text, sent_ids, services_of_client, settle


async def test_abandoned_claim_is_recovered_after_its_lease(client, start_chat, fake_plugin):
    fake_plugin.provider.fail_next(RetryableSendError("busy", retry_after=3600))
    chat = await start_chat()
    services = services_of_client(client)
    created = await (await send_text(client, chat)).json()
    await settle(client)
    message_id = uuid.UUID(created["id"])
    await fetch(
        "UPDATE message_outbox SET next_attempt_at = now() - interval '1 minute'"
        " WHERE message_id = {}",
        message_id,
    )

    # A worker claims the row (the task's first step) and dies before sending.
    dead = await outbox.claim(message_id, lease_seconds=3600)
    assert dead is not None and dead.attempts == 2

    assert message_id not in await outbox.due(0, 10_000)  # leased: the sweeper leaves it
    assert await send_message(created["id"], services=services) == "skipped"  # so does a redelivery
    assert fake_plugin.provider.sent == []

    await fetch(
        "UPDATE message_outbox SET locked_until = now() - interval '1 second'"
        " WHERE message_id = {}",
        message_id,
    )  # the lease ran out
    assert message_id in await outbox.due(0, 10_000)
    assert await sweep_outbox(services=services) >= 1
    await settle(client)

    assert sent_ids(fake_plugin).count(created["id"]) == 1
    assert (await message_row(created["id"]))["status"] == "sent"
    [event] = await fetch(
        "SELECT data FROM events WHERE conversation = {} AND type = 'message.status'",
        chat.conversation_id,
    )
    assert event["data"]["attempts"] == 3
    assert not await outbox.reschedule(dead, 0, {"code": "late"})  # the dead worker's lease is void
    assert await send_message(created["id"], services=services) == "skipped"
