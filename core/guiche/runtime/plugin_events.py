"""Plugins' own events (`campaign.progress`, `channel.qr`, ...) in the tenant's event log.

A plugin event is recorded like core's (a sequence number in `events`, so
`GET /api/v1/events?after=` resyncs it and log-driven consumers such as outgoing
webhooks see it) and published after the commit to the tenant's sockets in every
process. Core's own event types are refused: a plugin may not forge `message.new`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from guiche.foundation.errors import ValidationFailed
from guiche.realtime import events as ev
from guiche.realtime.events import BusEvent, PendingEvent, record_events

if TYPE_CHECKING:
    from guiche.runtime.services import Services

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
"""Dotted lower-case names, at least two parts: `<subject>.<what>`."""

CORE_EVENT_TYPES = frozenset(
    {
        ev.MESSAGE_NEW,
        ev.MESSAGE_STATUS,
        ev.MESSAGE_MERGED,
        ev.CONVERSATION_UPDATED,
        ev.OPERATOR_STATUS,
        ev.CHANNEL_STATE,
    }
)


def plugin_event(
    tenant_id: uuid.UUID,
    type: str,
    data: Mapping[str, Any] | None = None,
    *,
    conversation_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    assignee_id: uuid.UUID | None = None,
) -> PendingEvent:
    """A checked, not yet recorded plugin event.

    Visibility follows core's rule: with no department and no assignee every socket of
    the tenant sees it; with them, the same people who see such a conversation.
    """
    if not EVENT_TYPE.match(type):
        raise ValidationFailed(
            "An event type is dotted lower-case words, e.g. 'campaign.progress'.",
            details={"type": type},
        )
    if type in CORE_EVENT_TYPES:
        raise ValidationFailed(
            "Core's event types are recorded by core only.", details={"type": type}
        )
    return PendingEvent(
        tenant_id=tenant_id,
        type=type,
        data=dict(data or {}),
        conversation_id=conversation_id,
        department_id=department_id,
        assignee_id=assignee_id,
    )


async def publish_event(
    services: Services,
    tenant_id: uuid.UUID,
    type: str,
    data: Mapping[str, Any] | None = None,
    *,
    conversation_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    assignee_id: uuid.UUID | None = None,
) -> BusEvent:
    """Record one plugin event in its own transaction, then publish it; returns it sequenced."""
    pending = plugin_event(
        tenant_id,
        type,
        data,
        conversation_id=conversation_id,
        department_id=department_id,
        assignee_id=assignee_id,
    )
    async with services.db.transaction() as transaction:
        (recorded,) = await record_events(transaction.connection, [pending])
    await services.bus.publish([recorded])
    return recorded
