"""Reading a tenant's event log from a plugin: the public, tenant-scoped reader behind
log-driven consumers such as outgoing webhooks.

`events.seq` comes from a sequence, and a sequence is not commit order: a transaction
that took seq 10 may commit after one that took seq 11. A consumer that keeps a cursor
("everything up to 11 is done") would then never see 10. `settled_seq()` closes that
gap: it returns a sequence number below which every event is committed (or never will
be), by reading the sequence and then waiting until every transaction that was running
at that moment has ended. Read with `until=settled_seq(...)` and a cursor is safe.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from guiche.database.engine import connection

if TYPE_CHECKING:
    from guiche.runtime.services import Services

#: The most events one call returns.
MAX_LIMIT = 1000

_LAST = "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM events_seq_seq"
#: Writing transactions running now. A snapshot's `xip` lists only those below its
#: `xmax` (the latest *completed* xid + 1): one that got its xid after the last commit
#: is not in it, so the running transactions of our database shown by
#: `pg_stat_activity` (every session of Guichê's own role) are added. Transactions of
#: another database are left out when we can tell (xids are cluster-wide; another
#: database cannot write our events).
_RUNNING = """
SELECT coalesce(array_agg(DISTINCT t.x), '{}') FROM (
    SELECT xid(s)::text AS x FROM pg_snapshot_xip(pg_current_snapshot()) AS s
    WHERE NOT EXISTS (
        SELECT 1 FROM pg_stat_activity AS a
        WHERE a.backend_xid = xid(s) AND a.datname IS DISTINCT FROM current_database()
    )
    UNION
    SELECT backend_xid::text FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND datname = current_database()
) AS t
"""
_STILL_RUNNING = """
SELECT count(*) FROM (
    SELECT xid(s)::text AS x FROM pg_snapshot_xip(pg_current_snapshot()) AS s
    UNION
    SELECT backend_xid::text FROM pg_stat_activity WHERE backend_xid IS NOT NULL
) AS t WHERE t.x = ANY($1::text[])
"""


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One event of the tenant's log, as recorded (core's and plugins' alike)."""

    seq: int
    type: str
    data: dict[str, Any]
    conversation_id: uuid.UUID | None
    department_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    created_at: dt.datetime


def type_filter(types: Iterable[str]) -> tuple[list[str], list[str]]:
    """(exact names, prefixes) from names such as `message.new` and `conversation.*`."""
    exact: list[str] = []
    prefixes: list[str] = []
    for name in types:
        if name.endswith(".*"):
            prefixes.append(name[:-1].replace("\\", "").replace("%", "").replace("_", r"\_"))
        else:
            exact.append(name)
    return exact, prefixes


async def read_events(
    services: Services,
    tenant_id: uuid.UUID,
    *,
    after: int,
    limit: int = 100,
    types: Iterable[str] | None = None,
    until: int | None = None,
) -> list[LoggedEvent]:
    """The tenant's events with `after < seq` (and `seq <= until`), oldest first, at
    most `limit` (≤ `MAX_LIMIT`). `types` keeps only those names (`conversation.*`
    matches a prefix); `None` keeps all. Only `tenant_id`'s events, ever."""
    limit = max(1, min(limit, MAX_LIMIT))
    sql = (
        "SELECT seq, type, data, conversation, department, assignee, created_at FROM events"
        " WHERE tenant = $1 AND seq > $2 AND ($3::bigint IS NULL OR seq <= $3)"
    )
    args: list[Any] = [tenant_id, after, until]
    if types is not None:
        exact, prefixes = type_filter(types)
        sql += " AND (type = ANY($4::text[]) OR type LIKE ANY($5::text[]))"
        args += [exact, [p + "%" for p in prefixes]]
    sql += f" ORDER BY seq LIMIT {int(limit)}"
    async with connection(services.db) as conn:
        rows = await conn.fetch(sql, *args)
    return [
        LoggedEvent(
            seq=row["seq"],
            type=row["type"],
            data=_data(row["data"]),
            conversation_id=_uuid(row["conversation"]),
            department_id=_uuid(row["department"]),
            assignee_id=_uuid(row["assignee"]),
            created_at=row["created_at"],
        )
        for row in rows
    ]


def _uuid(value: Any) -> uuid.UUID | None:
    """asyncpg's own UUID type as the standard library's (what JSON encoders know)."""
    return None if value is None else uuid.UUID(str(value))


def _data(value: Any) -> dict[str, Any]:
    data = orjson.loads(value) if isinstance(value, str | bytes) else value
    return data if isinstance(data, dict) else {}


async def settled_seq(services: Services, *, wait: float = 5.0) -> int | None:
    """A sequence number at or below which every event is committed or never will be
    (all tenants), or None when a transaction older than the call is still running after
    `wait` seconds (try again later; nothing is lost by waiting)."""
    async with connection(services.db) as conn:
        last = await conn.fetchval(_LAST)
        # Taken after the sequence was read: every transaction holding a seq <= last is
        # either finished or listed here (it wrote its row with its xid already assigned).
        running = await conn.fetchval(_RUNNING) or []
        deadline = asyncio.get_running_loop().time() + wait
        pause = 0.002
        while running:
            if not await conn.fetchval(_STILL_RUNNING, running):
                break
            if asyncio.get_running_loop().time() >= deadline:
                return None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
    return int(last)


_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM events WHERE tenant = $1"
_FIRST_SEQ_SINCE = "SELECT min(seq) FROM events WHERE tenant = $1 AND created_at >= $2"


async def log_position(
    services: Services, tenant_id: uuid.UUID, *, since: dt.datetime | None = None
) -> int:
    """A cursor into the company's log for `read_events(after=...)`: without `since`, its
    end (a new reader gets what happens next); with `since`, just before the first event
    recorded at or after that time (a replay from then; the end when there is none)."""
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        if since is not None:
            first = await conn.fetchval(_FIRST_SEQ_SINCE, tenant_id, since)
            if first is not None:
                return int(first) - 1
        return int(await conn.fetchval(_LAST_SEQ, tenant_id))
