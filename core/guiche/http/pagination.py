"""Keyset (cursor) pagination on (created_at, id), newest first.

Offsets get slower with depth and skip rows under concurrent inserts; a cursor does neither.
The cursor is a row comparison, `(created_at, id) < ($c, $i)`: an index on
`(..., created_at DESC, id DESC)` starts its scan there, so page 100 costs what page 1
does. The equivalent `created_at < $c OR (created_at = $c AND id < $i)` is not an index
condition and turns into a scan of everything older (bench/README.md, history).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import orjson
from piccolo.columns.combination import WhereRaw
from piccolo.query import Select
from piccolo.table import Table
from pydantic import BaseModel, Field

from guiche.foundation.errors import BadRequest

T = TypeVar("T")


class PageQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = None


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(created_at: dt.datetime, row_id: Any) -> str:
    raw = orjson.dumps([created_at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str, id_type: Callable[[str], Any] = uuid.UUID
) -> tuple[dt.datetime, Any]:
    """`id_type` parses the id part: UUIDs, or `int` for bigserial keys (the audit log)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = orjson.loads(base64.urlsafe_b64decode(padded))
        return dt.datetime.fromisoformat(created), id_type(row_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadRequest("Invalid cursor", code="invalid_cursor") from None


async def paginate(
    query: Select,
    table: type[Table],
    page: PageQuery,
    id_type: Callable[[str], Any] = uuid.UUID,
) -> tuple[list[dict[str, Any]], str | None]:
    """Apply the cursor to a tenant-scoped select and return (rows, next_cursor)."""
    created_col, id_col = table.created_at, table.id  # type: ignore[attr-defined]
    if page.cursor:
        created, row_id = decode_cursor(page.cursor, id_type)
        name = table._meta.tablename
        query = query.where(
            WhereRaw(f'("{name}"."created_at", "{name}"."id") < ({{}}, {{}})', created, row_id)
        )
    rows = await query.order_by(created_col, id_col, ascending=False).limit(page.limit + 1)
    return split_page(rows, page.limit)


def split_page(
    rows: Sequence[Any], limit: int, key: str = "created_at"
) -> tuple[list[Any], str | None]:
    """Rows fetched with `LIMIT limit + 1`: the page, and the cursor after its last row
    (by `key`, then `id`) when the extra row shows there is more."""
    if len(rows) <= limit:
        return list(rows), None
    page = list(rows[:limit])
    return page, encode_cursor(page[-1][key], page[-1]["id"])
