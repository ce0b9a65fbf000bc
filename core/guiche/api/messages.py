"""A conversation's messages (history and sending) and uploaded media.

Sending answers 202: the message is stored as `pending` and sent by a worker; its
`message.status` events (and the history) show `sent`, `delivered`, `read` or `failed`,
or `unknown` when its worker died mid-call and the provider cannot be asked (see
`guiche.outbound.sender`: it is never sent again on its own).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

from aiohttp import BodyPartReader, hdrs, web
from pydantic import BaseModel

from guiche.api.common import path_id
from guiche.auth.principal import current_principal
from guiche.auth.visibility import require_visible, viewer_for
from guiche.conversations.history import message_page
from guiche.foundation.errors import (
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from guiche.foundation.jsonio import json_response
from guiche.http.endpoint import endpoint
from guiche.http.multipart import file_part, read_chunk
from guiche.http.pagination import Page, PageQuery, decode_cursor, split_page
from guiche.media.attachments import message_media
from guiche.media.files import media_row, save_upload, storage_of
from guiche.media.storage import StorageError
from guiche.outbound.schemas import MessageOut, SendMessageRequest
from guiche.outbound.service import create_outbound
from guiche.runtime.services import services_of

routes = web.RouteTableDef()
TAGS = ("messages",)
CHUNK_BYTES = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024
"""Room for multipart boundaries and part headers when checking Content-Length early."""


@routes.get("/api/v1/conversations/{id}/messages")
@endpoint(
    "conversations.read",
    query=PageQuery,
    response=Page[MessageOut],
    summary="A conversation's messages, newest first (cursor-paginated)",
    tags=TAGS,
)
async def list_messages(request: web.Request, *, query: PageQuery) -> Page[MessageOut]:
    principal = current_principal(request)
    conversation_id = path_id(request, "conversation")
    before = decode_cursor(query.cursor) if query.cursor else None
    rows = await message_page(
        services_of(request).db,
        await viewer_for(principal, only_visibility=True),
        conversation_id,
        limit=query.limit + 1,
        before=before,
    )
    if not rows:  # no messages, or not the caller's to see: only the latter is a 404
        await require_visible(principal, conversation_id)
    page, cursor = split_page(rows, query.limit)
    return Page[MessageOut](
        items=[MessageOut.from_history_row(row) for row in page], next_cursor=cursor
    )


@routes.post("/api/v1/conversations/{id}/messages")
@endpoint(
    "messages.send",
    body=SendMessageRequest,
    response=MessageOut,
    status=202,
    summary="Send a message (text, uploaded media or template); optional Idempotency-Key",
    tags=TAGS,
    errors=(409,),
)
async def send_message(request: web.Request, *, body: SendMessageRequest) -> web.Response:
    principal = current_principal(request)
    conversation_id = path_id(request, "conversation")
    created = await create_outbound(
        services_of(request),
        principal,
        conversation_id,
        body,
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    headers = {"Idempotent-Replayed": "true"} if created.replayed else None
    return json_response(created.message, status=202, headers=headers)


class MediaOut(BaseModel):
    id: uuid.UUID
    mime_type: str
    size: int
    filename: str | None
    sha256: str | None
    created_at: dt.datetime


class AttachmentOut(MediaOut):
    """An inbound message's attachment, kept in core's storage once fetched."""

    download_url: str


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await read_chunk(part, CHUNK_BYTES):
        yield chunk


@routes.post("/api/v1/media")
@endpoint(
    "media.upload",
    response=MediaOut,
    status=201,
    summary="Upload a file (multipart field 'file') to send in a message",
    tags=TAGS,
    content_type="multipart/form-data",
)
async def upload_media(request: web.Request) -> MediaOut:
    principal = current_principal(request)
    services = services_of(request)
    limit = services.settings.max_media_bytes
    if not request.content_type.startswith("multipart/"):
        raise UnsupportedMediaType(
            "Send multipart/form-data with the file in the field 'file'",
            code="multipart_required",
        )
    if request.content_length is not None and request.content_length > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(
            f"Files are limited to {limit} bytes",
            code="media_too_large",
            details={"max_bytes": limit},
        )
    part = await file_part(request)
    if part is not None:
        row = await save_upload(
            services,
            principal.tenant_id,
            _chunks(part),
            declared_mime=part.headers.get(hdrs.CONTENT_TYPE),
            filename=part.filename,
        )
        return MediaOut.model_validate(row)
    raise ValidationFailed(
        "No file: send it in the multipart field 'file'",
        details=[{"field": "file", "message": "required"}],
    )


@routes.get("/api/v1/media/{id}")
@endpoint(
    "conversations.read",
    summary="Download an uploaded or received file (as an attachment), as its own media type",
    tags=TAGS,
    content_type="*/*",  # the file's stored MIME type, whatever it is
)
async def download_media(request: web.Request) -> web.StreamResponse:
    principal = current_principal(request)
    media_id = path_id(request, "media")
    row = await media_row(principal.tenant_id, media_id)
    if row is None:
        raise NotFound("media not found")
    try:
        path = storage_of(services_of(request)).path(row["storage_key"])
    except StorageError:
        raise NotFound("media not found") from None
    if not path.is_file():
        raise NotFound("media not found", code="media_gone")
    filename = row["filename"] or f"{media_id}"
    return web.FileResponse(
        path,
        headers={
            hdrs.CONTENT_TYPE: row["mime_type"],
            hdrs.CONTENT_DISPOSITION: f"attachment; filename*=UTF-8''{quote(filename)}",
            "X-Content-Type-Options": "nosniff",
            hdrs.CACHE_CONTROL: "private, max-age=3600",
        },
    )


@routes.get("/api/v1/messages/{id}/media")
@endpoint(
    "conversations.read",
    response=AttachmentOut,
    summary="An inbound message's attachment, fetched once through its channel (any channel "
    "plugin's fetch_media) and kept; download it at download_url",
    tags=TAGS,
    errors=(503,),
)
async def message_attachment(request: web.Request) -> AttachmentOut:
    """One route for every channel: a plugin only implements `fetch_media`. The caller
    must see the conversation; the bytes are checked against the allowed media types."""
    principal = current_principal(request)
    message_id = path_id(request, "message")
    row = await message_media(
        services_of(request), principal.tenant_id, message_id, principal=principal
    )
    return AttachmentOut(
        id=row["id"],
        mime_type=row["mime_type"],
        size=row["size"],
        filename=row["filename"],
        sha256=row["sha256"],
        created_at=row["created_at"],
        download_url=f"/api/v1/media/{row['id']}",
    )
