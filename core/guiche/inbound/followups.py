"""After an ingest commits: publish its events, route new conversations, run plugin hooks.

Events go out first (agents see the message at once); routing runs inline, on the
ingest's connection, so the assignment is visible when the webhook is answered; plugin
hooks run in the background with the runner's timeout, so a slow plugin never delays a
provider's ack.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from guiche.channels import StoredMessage
from guiche.realtime import events as ev
from guiche.routing.service import route_opened
from guiche.runtime.event_hooks import emit_hooks, stored_message

if TYPE_CHECKING:
    from guiche.channel_host.runtime import ChannelRow
    from guiche.inbound.ingest import IngestResult
    from guiche.runtime.services import Services


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
