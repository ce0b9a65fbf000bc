"""Stored media: which files may be uploaded, saving an upload, handing bytes to a send.

Only an allow-list of types (what WhatsApp-like channels deliver: images, voice and
audio, video, PDF and office documents), each checked against the file's first bytes,
so a script renamed `.jpg` is refused. Downloads are always served as attachments.

Sending: the adapter gets the bytes inline as `OutboundMedia.data_base64` for files up
to `media_inline_max_bytes` (default 5 MB) and uploads or posts them the provider's way
(WhatsApp Cloud uploads to /media, Evolution accepts base64). Larger files are refused
when the message is created (422 `media_too_large_to_send`), never midway through.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import mimetypes
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from guiche.foundation.errors import PayloadTooLarge, UnsupportedMediaType
from guiche.media.storage import MediaStorage, StorageError
from guiche.models import MediaFile

if TYPE_CHECKING:
    from guiche.foundation.config import Settings
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.media")

_FTYP = b"ftyp"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = b"PK\x03\x04"


def _ftyp(head: bytes) -> bool:
    return head[4:8] == _FTYP


def _mp3(head: bytes) -> bool:
    return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _aac(head: bytes) -> bool:
    adts = len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0
    return adts or head.startswith(b"ADIF") or _ftyp(head)


#: Allowed MIME type → does the content look like it?
SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "image/jpeg": lambda h: h.startswith(b"\xff\xd8\xff"),
    "image/png": lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/webp": lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP",
    "audio/ogg": lambda h: h.startswith(b"OggS"),
    "audio/mpeg": _mp3,
    "audio/aac": _aac,
    "audio/mp4": _ftyp,
    "video/mp4": _ftyp,
    "video/3gpp": _ftyp,
    "application/pdf": lambda h: h.startswith(b"%PDF-"),
    "application/msword": lambda h: h.startswith(_OLE),
    "application/vnd.ms-excel": lambda h: h.startswith(_OLE),
    "application/vnd.ms-powerpoint": lambda h: h.startswith(_OLE),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (
        lambda h: h.startswith(_ZIP)
    ),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (
        lambda h: h.startswith(_ZIP)
    ),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (
        lambda h: h.startswith(_ZIP)
    ),
}
ALLOWED_MIME_TYPES = frozenset(SIGNATURES)

_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/x-m4a": "audio/mp4",
    "audio/m4a": "audio/mp4",
    "audio/x-aac": "audio/aac",
    "application/x-pdf": "application/pdf",
}
_SNIFF_BYTES = 16


def storage_of(services: Services) -> MediaStorage:
    return MediaStorage(services.settings.media_root)


def resolve_mime(declared: str | None, filename: str | None) -> str:
    """The upload's type: as declared, else guessed from the name; 415 unless allowed."""
    mime = (declared or "").split(";", 1)[0].strip().lower()
    if not mime or mime == "application/octet-stream":
        guessed, _ = mimetypes.guess_type(filename or "", strict=False)
        mime = (guessed or mime).lower()
    mime = _ALIASES.get(mime, mime)
    if mime not in ALLOWED_MIME_TYPES:
        raise UnsupportedMediaType(
            f"Files of type {mime or 'unknown'!r} cannot be uploaded",
            code="media_type_not_allowed",
            details={"mime_type": mime or None, "allowed": sorted(ALLOWED_MIME_TYPES)},
        )
    return mime


def kind_for(mime: str) -> str:
    """The `OutboundMedia.kind` (and message type) for a stored file."""
    family = mime.split("/", 1)[0]
    return family if family in ("image", "audio", "video") else "document"


def clean_filename(filename: str | None) -> str | None:
    """The name's last path segment, printable and at most 255 characters; display only.

    Percent-escapes are decoded first (aiohttp's client escapes names, browsers do not).
    """
    if not filename:
        return None
    name = PurePath(unquote(filename).replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or None


def _mismatch(mime: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"The file's content is not {mime}",
        code="media_content_mismatch",
        details={"mime_type": mime},
    )


async def save_upload(
    services: Services,
    tenant_id: uuid.UUID,
    chunks: AsyncIterator[bytes],
    *,
    declared_mime: str | None,
    filename: str | None,
) -> dict[str, Any]:
    """Stream an upload to storage (size-capped, type-checked) and record it; the new row."""
    settings = services.settings
    mime = resolve_mime(declared_mime, filename)
    file_id = uuid.uuid4()
    key = MediaStorage.key_for(tenant_id, file_id)
    writer = storage_of(services).writer(key)
    head = b""
    try:
        async for chunk in chunks:
            if writer.size + len(chunk) > settings.max_media_bytes:
                raise PayloadTooLarge(
                    f"Files are limited to {settings.max_media_bytes} bytes",
                    code="media_too_large",
                    details={"max_bytes": settings.max_media_bytes},
                )
            if len(head) < _SNIFF_BYTES:
                head += chunk[: _SNIFF_BYTES - len(head)]
                if len(head) >= _SNIFF_BYTES and not SIGNATURES[mime](head):
                    raise _mismatch(mime)
            await writer.write(chunk)
        if writer.size == 0:
            raise UnsupportedMediaType("The file is empty", code="media_empty")
        if len(head) < _SNIFF_BYTES and not SIGNATURES[mime](head):
            raise _mismatch(mime)
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    try:
        await MediaFile.insert(
            MediaFile(
                id=file_id,
                tenant=tenant_id,
                storage_key=key,
                mime_type=mime,
                size=writer.size,
                filename=clean_filename(filename),
                sha256=writer.sha256,
            )
        )
    except BaseException:
        await storage_of(services).delete(key)
        raise
    return await media_row(tenant_id, file_id)  # type: ignore[return-value]


async def media_row(tenant_id: uuid.UUID, media_id: uuid.UUID) -> dict[str, Any] | None:
    return (
        await MediaFile.select()
        .where((MediaFile.tenant == tenant_id) & (MediaFile.id == media_id))
        .first()
    )


class MediaUnavailable(Exception):
    """The stored file behind a pending media message is gone (retention, disk loss)."""


async def inline_data(services: Services, tenant_id: uuid.UUID, media_id: uuid.UUID) -> str:
    """The file's bytes as base64 for `OutboundMedia.data_base64`."""
    row = await media_row(tenant_id, media_id)
    if row is None:
        raise MediaUnavailable(f"media {media_id} no longer exists")
    try:
        data = await storage_of(services).read(row["storage_key"])
    except (OSError, StorageError) as exc:
        raise MediaUnavailable(f"media {media_id} cannot be read: {exc}") from None
    return base64.b64encode(data).decode("ascii")


def too_large_to_send(settings: Settings, size: int) -> bool:
    return size > settings.media_inline_max_bytes


_PURGE = """
DELETE FROM media_files
WHERE id IN (SELECT id FROM media_files WHERE created_at < {} ORDER BY created_at LIMIT {})
RETURNING storage_key
"""
PURGE_BATCH = 500


async def purge_expired_media(services: Services, now: dt.datetime | None = None) -> int:
    """Delete media older than `media_retention_days` (0 keeps everything); files after rows.

    Rows go first: a file left behind by a crash is only disk, never a broken download.
    """
    days = services.settings.media_retention_days
    if days <= 0:
        return 0
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)
    storage = storage_of(services)
    removed = 0
    while True:
        rows = await MediaFile.raw(_PURGE, cutoff, PURGE_BATCH)
        for row in rows:
            try:
                await storage.delete(row["storage_key"])
            except (OSError, StorageError):
                log.warning("could not delete media file", extra={"key": row["storage_key"]})
        removed += len(rows)
        if len(rows) < PURGE_BATCH:
            return removed
