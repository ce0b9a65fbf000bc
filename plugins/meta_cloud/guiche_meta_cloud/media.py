"""Inbound media: fetched from Meta on first access (default) or right after it arrives.

Meta's webhook only names a media id, whose download URL expires within minutes and
whose media Meta deletes after about 30 days. Core's `message_media` fetches through
this adapter's `fetch_media`, stores the file once and links it to the message; `routes`
exposes that as a route and this module, for channels set to `eager`, as a task kicked by
the `guiche_on_message` hook.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from pydantic import BaseModel

from guiche.channels import MEDIA_TYPES, StoredMessage
from guiche.plugin import (
    ApiError,
    PluginContext,
    load_channel,
    message_media,
)

log = logging.getLogger("guiche.plugin.meta_cloud")

CHANNEL_TYPE = "meta_cloud"
DOWNLOAD_TASK = "meta_cloud.download_media"
_MEDIA_TYPE_NAMES = frozenset(kind.value for kind in MEDIA_TYPES)


class StoredMedia(BaseModel):
    media_id: uuid.UUID
    mime_type: str
    size: int
    filename: str | None
    sha256: str | None
    created_at: dt.datetime
    download_url: str


def stored_media(row: dict[str, Any]) -> StoredMedia:
    return StoredMedia(
        media_id=row["id"],
        mime_type=row["mime_type"],
        size=row["size"],
        filename=row["filename"],
        sha256=row["sha256"],
        created_at=row["created_at"],
        download_url=f"/api/v1/media/{row['id']}",
    )


async def on_message(ctx: PluginContext, message: StoredMessage) -> None:
    """For `eager` channels, queue the download of a new inbound attachment."""
    if message.direction != "in" or message.type not in _MEDIA_TYPE_NAMES:
        return
    if message.channel_id is None:
        return
    channel = await load_channel(ctx.services, message.channel_id, tenant_id=ctx.tenant_id)
    if channel is None or channel.info.type != CHANNEL_TYPE:
        return
    if channel.adapter.config.media_download != "eager":
        return
    tasks = ctx.services.tasks
    if tasks is None:  # no queue in this process: do it here
        await download_media(str(ctx.tenant_id), str(message.id), services=ctx.services)
        return
    await tasks.kick(DOWNLOAD_TASK, str(ctx.tenant_id), str(message.id))


async def download_media(tenant_id: str, message_id: str, *, services: Any) -> str:
    """The `meta_cloud.download_media` task: idempotent (a stored file is reused)."""
    try:
        row = await message_media(services, uuid.UUID(tenant_id), uuid.UUID(message_id))
    except ApiError as exc:
        log.warning(
            "eager media download failed; it will be fetched on first access",
            extra={"message_id": message_id, "code": exc.code, "error": exc.message},
        )
        return "failed"
    return str(row["id"])
