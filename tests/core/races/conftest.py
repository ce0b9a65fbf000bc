"""Fixtures for the provider races: the outbound ones as they are (the fake channel
plugin installed, immediate retries, a started chat, the in-process worker), plus
helpers to build what a provider posts while a send is still in flight."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

from guiche.channels import (
    DeliveryStatus,
    InboundMessage,
    MessageType,
    OutboundMessage,
    ProviderError,
    Sender,
    StatusUpdate,
)
from tests.core.outbound.conftest import (  # noqa: F401 - fixtures, used by name
    client,
    client_overrides,
    fake_plugin,
    fetch,
    make_channel,
    post_webhook,
    start_chat,
)

CONTACT_WA_ID = "5511987654321"  # the customer `start_chat` writes as


def status(
    provider_id: str, value: DeliveryStatus, *, error: ProviderError | None = None
) -> StatusUpdate:
    return StatusUpdate(
        provider_message_id=provider_id,
        status=value,
        timestamp=dt.datetime.now(dt.UTC),
        error=error,
    )


def echo_of(message: OutboundMessage, provider_id: str) -> InboundMessage:
    """Our own send as a provider echoes it: a `from_me` message in the customer's chat."""
    return InboundMessage(
        provider_message_id=provider_id,
        sender=Sender(phone=CONTACT_WA_ID),
        timestamp=dt.datetime.now(dt.UTC),
        type=MessageType.TEXT,
        text=message.text,
        from_me=True,
        raw={"echo": {"id": provider_id}},
    )


async def parked(channel_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT * FROM early_statuses WHERE channel = {} ORDER BY timestamp, status", channel_id
    )


async def outbound_rows(conversation_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT * FROM messages WHERE conversation = {} AND direction = 'out'", conversation_id
    )


async def key_holder(channel_id: uuid.UUID, provider_id: str) -> uuid.UUID | None:
    rows = await fetch(
        "SELECT message_id FROM message_keys WHERE channel = {} AND provider_message_id = {}",
        channel_id,
        provider_id,
    )
    return rows[0]["message_id"] if rows else None


async def event_rows(conversation_id: uuid.UUID, kind: str) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT * FROM events WHERE conversation = {} AND type = {} ORDER BY seq",
        conversation_id,
        kind,
    )


async def wait_for_advisory_lock_waiter(within: float = 10.0) -> None:
    """Until a session of this test database is blocked on an advisory lock."""
    sql = (
        "SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
    )
    async with asyncio.timeout(within):
        while True:  # each round trip yields to the loop: no sleeping needed
            if (await fetch(sql))[0]["n"]:
                return
