"""Inbound attachments: fetched through the channel's adapter once, then kept in core storage.

Providers such as Meta's Cloud API only send a media id in the webhook; the bytes are
downloaded on first access (or eagerly, when a channel plugin asks right after ingest),
saved exactly like an upload (type allow-list, content sniffing, size cap) and linked
to the message as `payload.media_id`, so the history shows `media_id` and
`GET /api/v1/media/{id}` serves the file. Concurrent first accesses are safe: the first
link wins and a loser's copy is deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from guiche.auth.visibility import require_visible
from guiche.channel_host.runtime import load_channel_adapter
from guiche.channels import Media, PermanentSendError, RetryableSendError
from guiche.foundation.errors import NotFound, ServiceUnavailable
from guiche.foundation.message_ids import created_at_filter
from guiche.media.files import media_row, save_upload, storage_of
from guiche.models import MediaFile, Message
from guiche.provider_http.call_log import provider_call

if TYPE_CHECKING:
    from guiche.auth.principal import Principal
    from guiche.runtime.services import Services

_MESSAGE = """
SELECT id, created_at, channel, conversation, direction, payload
FROM messages WHERE tenant = {} AND id = {}"""

# Concatenation rather than jsonb_set: no literal braces for Piccolo's `{}` placeholders.
_LINK = """
UPDATE messages SET payload = payload || jsonb_build_object('media_id', {}::text),
                    updated_at = now()
WHERE tenant = {} AND id = {} AND created_at = {} AND payload->>'media_id' IS NULL
RETURNING id
"""


def _payload(row: dict[str, Any]) -> dict[str, Any]:
    payload = row.get("payload") or {}
    return orjson.loads(payload) if isinstance(payload, str | bytes) else dict(payload)


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _discard(services: Services, tenant_id: uuid.UUID, row: dict[str, Any]) -> None:
    await MediaFile.delete().where((MediaFile.tenant == tenant_id) & (MediaFile.id == row["id"]))
    await storage_of(services).delete(row["storage_key"])


async def message_media(
    services: Services,
    tenant_id: uuid.UUID,
    message_id: uuid.UUID,
    *,
    principal: Principal | None = None,
) -> dict[str, Any]:
    """The stored file of a message's attachment, downloading it first if needed.

    Raises `NotFound` for another tenant's or an unknown message (and, with `principal`,
    one in a conversation the caller may not see), a message without media, or media
    the provider no longer has; `ServiceUnavailable` when the provider failed for now.
    Returns the `media_files` row (id, mime_type, size, filename, sha256, ...).
    """
    at, window = created_at_filter(message_id)  # one chunk, not all (guiche.foundation.message_ids)
    rows = await Message.raw(_MESSAGE + at, tenant_id, message_id, *window)
    if not rows:
        raise NotFound("message not found")
    message = rows[0]
    if principal is not None and message["conversation"] is not None:
        await require_visible(principal, message["conversation"])
    payload = _payload(message)
    if payload.get("media_id"):
        stored = await media_row(tenant_id, uuid.UUID(str(payload["media_id"])))
        if stored is not None:
            return stored
        raise NotFound("the message's media was deleted", code="media_gone")
    described = (payload.get("normalised") or {}).get("media")
    if not described or message["direction"] != "in":
        raise NotFound("this message has no media to fetch", code="no_media")
    loaded = (
        await load_channel_adapter(services, message["channel"]) if message["channel"] else None
    )
    if loaded is None or loaded.row.tenant_id != tenant_id:
        raise NotFound("the message's channel is not available", code="channel_unavailable")
    media = Media.model_validate(described)
    try:
        with provider_call(loaded.row.tenant_id, loaded.row.id, "fetch_media"):
            fetched = await loaded.adapter.fetch_media(media)
    except PermanentSendError as exc:
        raise NotFound(
            f"the provider cannot deliver this media: {exc.message}",
            code="media_unavailable",
            details={"provider_code": exc.code},
        ) from None
    except RetryableSendError as exc:
        retry = max(1, int(exc.retry_after or 5))
        raise ServiceUnavailable(
            f"the provider could not deliver this media now: {exc.message}",
            code="media_fetch_failed",
            details={"provider_code": exc.code, "retry_after": retry},
            headers={"Retry-After": str(retry)},
        ) from None
    saved = await save_upload(
        services,
        tenant_id,
        _one_chunk(fetched.data),
        declared_mime=fetched.mime_type or media.mime_type,
        filename=fetched.filename or media.filename,
    )
    linked = await Message.raw(
        _LINK, str(saved["id"]), tenant_id, message_id, message["created_at"]
    )
    if linked:
        return saved
    await _discard(services, tenant_id, saved)  # a concurrent access linked its copy first
    return await message_media(services, tenant_id, message_id)
