"""Reading a file field from a multipart/form-data upload, a malformed body being a 400.

aiohttp's multipart reader raises parser errors (`InvalidHeader`, `BadHttpMessage`) and
plain `ValueError`s ("Invalid boundary", a missing boundary) for bodies a client got
wrong; here they become the API's 400 `invalid_multipart` instead of a 500. Only the
reading is guarded, so a bug in what a caller does with the bytes still surfaces.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from guiche.foundation.errors import BadRequest
from guiche.foundation.pgtext import clean_text


@contextmanager
def _malformed_is_400() -> Iterator[None]:
    try:
        yield
    except (HttpProcessingError, ValueError) as exc:
        raise BadRequest(
            "Malformed multipart body", code="invalid_multipart", details=clean_text(str(exc))[:200]
        ) from None


async def file_part(request: web.Request, field: str = "file") -> BodyPartReader | None:
    """The part named `field` (earlier parts skipped), or None when the body has none."""
    with _malformed_is_400():
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name == field:
                return part
            await part.release()
    return None


async def read_chunk(part: BodyPartReader, size: int) -> bytes:
    """The next bytes of `part` (b"" at its end)."""
    with _malformed_is_400():
        return await part.read_chunk(size)
