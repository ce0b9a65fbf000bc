"""Recorded events, as the plugin event hooks of the tenant's plugins see them.

Everyone who records events (ingest, sends, conversation transitions, channel state)
hands them here after the commit; `services.events` (the plugin host's runner) calls
each enabled plugin's hook with its timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guiche.channels import ConversationEvent, StoredMessage, StoredStatus
from guiche.realtime import events as ev
from guiche.realtime.events import BusEvent

if TYPE_CHECKING:
    from guiche.runtime.services import Services


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
