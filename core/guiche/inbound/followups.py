"""After an ingest commits: publish its events, route new conversations, run plugin hooks.

Events go out first (agents see the message at once); routing runs inline, on the
ingest's connection, so the assignment is visible when the webhook is answered; plugin
hooks run in the background with the runner's timeout, so a slow plugin never delays a
provider's ack.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from guiche.channels import ConversationEvent, StoredMessage, StoredStatus
from guiche.realtime import events as ev
from guiche.realtime.events import BusEvent
from guiche.routing.service import route_opened

if TYPE_CHECKING:
    from guiche.inbound.ingest import ChannelRow, IngestResult
    from guiche.services import Services


async def after_ingest(
    services: Services, channel: ChannelRow, result: IngestResult, conn: Any = None
) -> None:
    """`conn`: the ingest's connection (its transaction committed), reused for routing."""
    await services.bus.publish(result.events)
    if result.opened:
        await route_opened(
            services, channel.tenant_id, result.opened, opening_messages(result), conn=conn
        )
    if result.events:
        services.spawn(
            emit_hooks(services, channel.tenant_id, result.events), name="guiche-ingest-hooks"
        )


def stored_message(event: BusEvent) -> StoredMessage:
    """A `message.new` event as plugins see the message."""
    data = event.data
    return StoredMessage(
        id=data["id"],
        tenant_id=event.tenant_id,
        conversation_id=data.get("conversation_id"),
        contact_id=data.get("contact_id"),
        channel_id=data.get("channel_id"),
        direction=data["direction"],
        type=data["type"],
        body=data.get("body") or "",
        status=data["status"],
        provider_message_id=data.get("provider_message_id"),
        created_at=data["created_at"],
    )


def opening_messages(result: IngestResult) -> dict[uuid.UUID, StoredMessage]:
    """The first message of each conversation the batch opened: what a routing plugin
    (`guiche_route_inbound`) decides on."""
    opened = {uuid.UUID(str(conversation)) for conversation in result.opened}
    first: dict[uuid.UUID, StoredMessage] = {}
    for event in result.events:
        if event.type == ev.MESSAGE_NEW and event.data.get("conversation_id") is not None:
            conversation = uuid.UUID(str(event.data["conversation_id"]))
            if conversation in opened and conversation not in first:
                first[conversation] = stored_message(event)
    return first


async def emit_hooks(services: Services, tenant_id: object, events: list[BusEvent]) -> None:
    """Translate recorded events into the plugin event hooks of the tenant's plugins."""
    for event in events:
        data = event.data
        if event.type == ev.MESSAGE_NEW:
            message = stored_message(event)
            await services.events.emit(event.tenant_id, "guiche_on_message", message=message)
        elif event.type == ev.MESSAGE_STATUS:
            update = StoredStatus(
                message_id=data["id"],
                tenant_id=event.tenant_id,
                conversation_id=data.get("conversation_id"),
                status=data["status"],
                error=data.get("error"),
                provider_message_id=data.get("provider_message_id"),
            )
            await services.events.emit(event.tenant_id, "guiche_on_message_status", update=update)
        elif event.type == ev.CONVERSATION_UPDATED:
            conversation = ConversationEvent(
                conversation_id=data["conversation_id"],
                tenant_id=event.tenant_id,
                action=data.get("action", "updated"),
                status=data.get("status"),
                assignee_id=data.get("assignee_id"),
                department_id=data.get("department_id"),
                actor_id=data.get("actor_id"),
                data={k: v for k, v in data.items() if k not in {"conversation_id", "action"}},
            )
            await services.events.emit(
                event.tenant_id, "guiche_on_conversation_event", event=conversation
            )
        elif event.type == ev.CHANNEL_STATE:
            await services.events.emit(
                event.tenant_id,
                "guiche_on_channel_state",
                channel=data["channel_id"],
                state=data["state"],
            )
