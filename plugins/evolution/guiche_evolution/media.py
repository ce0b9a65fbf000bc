"""Inbound attachments into core storage right after they arrive.

Evolution sends the bytes inline (webhook `base64: true`), and only while the message is
fresh can its server still decrypt it, so each inbound media message is saved through
core's `message_media` (type allow-list, content sniffing, size cap) as soon as it is
stored. The work runs as a task so the event hook returns at once.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from guiche.channels import StoredMessage
from guiche.plugin import ApiError, PluginContext, load_channel, message_media

log = logging.getLogger("guiche.plugin.evolution")

STORE_MEDIA_TASK = "store_media"
MEDIA_MESSAGE_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})


async def on_message(ctx: PluginContext, message: StoredMessage) -> None:
    """Queue the attachment of a new inbound media message for storage."""
    if message.direction != "in" or message.type not in MEDIA_MESSAGE_TYPES:
        return
    if message.channel_id is None:
        return
    await ctx.services.tasks.kick(
        f"evolution.{STORE_MEDIA_TASK}",
        str(ctx.tenant_id),
        str(message.channel_id),
        str(message.id),
    )


async def store_media(tenant_id: str, channel_id: str, message_id: str, services: Any) -> None:
    """Save one message's attachment (a no-op when already saved or not ours)."""
    tenant, channel = uuid.UUID(tenant_id), uuid.UUID(channel_id)
    loaded = await load_channel(services, channel, tenant_id=tenant)
    if loaded is None or loaded.info.type != "evolution":
        return
    try:
        await message_media(services, tenant, uuid.UUID(message_id))
    except ApiError as exc:  # unavailable or refused media: it stays fetchable on demand
        log.warning(
            "inbound media not stored",
            extra={"message_id": message_id, "code": exc.code, "error": exc.message},
        )
