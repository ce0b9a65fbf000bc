"""Tenant-scoped data access: every query on a tenant-owned table goes through here.

`owned()` adds the tenant filter; `get_owned()` answers 404 for another tenant's ids
exactly as for ids that do not exist, so ids leak nothing across companies.
"""

from __future__ import annotations

import uuid
from typing import Any

from piccolo.columns import Column
from piccolo.query import Select
from piccolo.table import Table

from guiche.foundation.errors import NotFound


def owned(table: type[Table], tenant_id: uuid.UUID, *columns: Column) -> Select:
    """A select on `table` restricted to one tenant's rows."""
    return table.select(*columns).where(table.tenant == tenant_id)  # type: ignore[attr-defined]


async def get_owned(
    table: type[Table], tenant_id: uuid.UUID, row_id: Any, *columns: Column, what: str = ""
) -> dict[str, Any]:
    """One of the tenant's rows by id, or 404 (also for malformed ids)."""
    label = what or table._meta.tablename.rstrip("s")
    try:
        key = row_id if isinstance(row_id, uuid.UUID) else uuid.UUID(str(row_id))
    except ValueError:
        raise NotFound(f"{label} not found") from None
    row = (
        await owned(table, tenant_id, *columns)
        .where(table.id == key)  # type: ignore[attr-defined]
        .output(load_json=True)
        .first()
    )
    if row is None:
        raise NotFound(f"{label} not found")
    return row


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """Path ids that are not UUIDs are simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} not found") from None
