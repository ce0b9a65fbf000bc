"""Keeping the metrics table and its hourly rollups true, incrementally.

`refresh` recomputes the metrics rows of some conversations from their timelines (core's
`conversation_timelines`), then rebuilds the rollups of every local day a row entered or
left. A day's rollup is rebuilt whole from that day's metrics rows under a lock on
(tenant, day), so concurrent closes and the catch-up task never double count, and a
repeated run changes nothing.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from guiche.plugin import closed_conversations, conversation_timelines
from guiche_reports.calendar import Calendar
from guiche_reports.config import ReportsSettings
from guiche_reports.metrics import MEASURES, Metrics, measure

BUCKET_BASE = 1.02
"""Histogram buckets grow by 2%: percentiles read from rollups are within 1% of exact."""

_METRIC_COLUMNS = (
    "tenant",
    "conversation",
    "contact",
    "channel",
    "channel_type",
    "department",
    "agent",
    "tabulation",
    "opened_at",
    "queued_at",
    "first_assigned_at",
    "first_agent_message_at",
    "closed_at",
    "day",
    "hour",
    "messages_in",
    "messages_out",
    "transfers",
    "reopens",
    *MEASURES,
    "response_sum_s",
    "response_sum_bs",
    "response_count",
    "sla_met",
)

_UPSERT = f"""
INSERT INTO reports_conversations ({", ".join(_METRIC_COLUMNS)}, updated_at)
VALUES ({", ".join(f"${i}" for i in range(1, len(_METRIC_COLUMNS) + 1))}, now())
ON CONFLICT (tenant, conversation) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in _METRIC_COLUMNS[2:])}, updated_at = now()
"""

_OLD_DAYS = """
SELECT DISTINCT day FROM reports_conversations WHERE tenant = $1 AND conversation = ANY($2::uuid[])
"""

_DELETE = """
DELETE FROM reports_conversations WHERE tenant = $1 AND conversation = ANY($2::uuid[])
"""

_DAY_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2::text, 0))"

_DAY_ROWS = f"""
SELECT {", ".join(_METRIC_COLUMNS)} FROM reports_conversations WHERE tenant = $1 AND day = $2
"""

_ROLLUP_KEY = ("hour", "agent", "department", "channel", "tabulation")
_ROLLUP_SUMS = (
    "conversations",
    "reopened",
    "transfers",
    "sla_met",
    "sla_counted",
    "messages_in",
    "messages_out",
    "response_sum_s",
    "response_sum_bs",
    "response_count",
)
_ROLLUP_COLUMNS = (
    "tenant",
    "day",
    *_ROLLUP_KEY,
    *_ROLLUP_SUMS,
    *(f"{m}_{part}" for m in MEASURES for part in ("n", "sum", "hist")),
)
_ROLLUP_INSERT = f"""
INSERT INTO reports_hourly ({", ".join(_ROLLUP_COLUMNS)})
VALUES ({", ".join(f"${i}" for i in range(1, len(_ROLLUP_COLUMNS) + 1))})
"""

_CURSOR = "SELECT closed_at, conversation FROM reports_cursor WHERE tenant = $1"
_SET_CURSOR = """
INSERT INTO reports_cursor (tenant, closed_at, conversation) VALUES ($1, $2, $3)
ON CONFLICT (tenant) DO UPDATE SET closed_at = EXCLUDED.closed_at,
    conversation = EXCLUDED.conversation
"""
_RESET_CURSOR = "DELETE FROM reports_cursor WHERE tenant = $1"


def bucket(seconds: float) -> int:
    """The histogram bucket of a time: `floor(log_1.02(1 + s))`."""
    return math.floor(math.log1p(max(seconds, 0.0)) / math.log(BUCKET_BASE))


def bucket_value(index: int) -> float:
    """A bucket's representative time: the middle of its range."""
    low = BUCKET_BASE**index - 1
    high = BUCKET_BASE ** (index + 1) - 1
    return (low + high) / 2


def percentile(histogram: dict[int, int], fraction: float) -> float | None:
    """Nearest-rank percentile of a histogram, as its bucket's representative time."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bucket_value(index)
    return None  # pragma: no cover - rank <= total


def _row(m: Metrics, cal: Calendar) -> tuple[Any, ...]:
    local = cal.local(m.closed_at)
    return (
        m.tenant_id,
        m.conversation_id,
        m.contact_id,
        m.channel_id,
        m.channel_type,
        m.department_id,
        m.agent_id,
        m.tabulation_id,
        m.opened_at,
        m.queued_at,
        m.first_assigned_at,
        m.first_agent_message_at,
        m.closed_at,
        local.date(),
        local.hour,
        m.messages_in,
        m.messages_out,
        m.transfers,
        m.reopens,
        *(m.times[name] for name in MEASURES),
        m.response_sum_s,
        m.response_sum_bs,
        m.response_count,
        m.sla_met,
    )


async def refresh(
    services: Any,
    tenant_id: uuid.UUID,
    settings: ReportsSettings,
    conversation_ids: Sequence[uuid.UUID],
) -> int:
    """Recompute these conversations' rows (closed ones stored, open ones removed) and the
    rollups of the days they touch; returns how many rows are stored."""
    if not conversation_ids:
        return 0
    cal = Calendar.of(settings)
    timelines = await conversation_timelines(services, tenant_id, conversation_ids)
    rows = [
        _row(m, cal) for t in timelines if (m := measure(t, cal, settings.sla_target)) is not None
    ]
    stored = {row[1] for row in rows}
    gone = [cid for cid in conversation_ids if cid not in stored]
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        days = {r["day"] for r in await conn.fetch(_OLD_DAYS, tenant_id, list(conversation_ids))}
        if gone:
            await conn.execute(_DELETE, tenant_id, gone)
        if rows:
            await conn.executemany(_UPSERT, rows)
    days |= {row[13] for row in rows}
    for day in sorted(days):
        await rebuild_day(services, tenant_id, day)
    return len(rows)


def _rollups(tenant_id: uuid.UUID, day: dt.date, rows: Iterable[Any]) -> list[tuple[Any, ...]]:
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = tuple(r[k] for k in _ROLLUP_KEY)
        g = groups.get(key)
        if g is None:
            g = groups[key] = dict.fromkeys(_ROLLUP_SUMS, 0)
            for m in MEASURES:
                g[f"{m}_n"], g[f"{m}_sum"], g[f"{m}_hist"] = 0, 0.0, {}
        g["conversations"] += 1
        g["reopened"] += 1 if r["reopens"] else 0
        g["transfers"] += r["transfers"]
        if r["sla_met"] is not None:
            g["sla_counted"] += 1
            g["sla_met"] += 1 if r["sla_met"] else 0
        g["messages_in"] += r["messages_in"]
        g["messages_out"] += r["messages_out"]
        g["response_sum_s"] += r["response_sum_s"]
        g["response_sum_bs"] += r["response_sum_bs"]
        g["response_count"] += r["response_count"]
        for m in MEASURES:
            value = r[m]
            if value is None:
                continue
            g[f"{m}_n"] += 1
            g[f"{m}_sum"] += value
            hist = g[f"{m}_hist"]
            b = bucket(value)
            hist[b] = hist.get(b, 0) + 1
    out = []
    for key, g in groups.items():
        values = [
            orjson.dumps({str(k): v for k, v in g[c].items()}).decode()
            if c.endswith("_hist")
            else g[c]
            for c in _ROLLUP_COLUMNS[2 + len(_ROLLUP_KEY) :]
        ]
        out.append((tenant_id, day, *key, *values))
    return out


async def rebuild_day(services: Any, tenant_id: uuid.UUID, day: dt.date) -> None:
    """Rebuild one local day's hourly rollups from that day's metrics rows."""
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        await conn.execute(_DAY_LOCK, str(tenant_id), day.isoformat())
        rows = await conn.fetch(_DAY_ROWS, tenant_id, day)
        await conn.execute(
            "DELETE FROM reports_hourly WHERE tenant = $1 AND day = $2", tenant_id, day
        )
        rollups = _rollups(tenant_id, day, rows)
        if rollups:
            await conn.executemany(_ROLLUP_INSERT, rollups)


async def catch_up(
    services: Any,
    tenant_id: uuid.UUID,
    settings: ReportsSettings,
    *,
    batch: int = 500,
    max_batches: int = 40,
) -> int:
    """Measure the conversations closed since the tenant's cursor (all of them the first
    time), batch by batch, moving the cursor after each; returns how many were read.

    At most `max_batches` per call, so one run of the periodic task stays short and the
    next run goes on where it stopped (a backfill of a long history spans runs)."""
    async with services.db.transaction() as transaction:
        row = await transaction.connection.fetchrow(_CURSOR, tenant_id)
    after = (row["closed_at"], row["conversation"]) if row else None
    total = 0
    for _ in range(max_batches):
        closed = await closed_conversations(services, tenant_id, after=after, limit=batch)
        if not closed:
            return total
        await refresh(services, tenant_id, settings, [cid for cid, _ in closed])
        last_id, last_at = closed[-1]
        after = (last_at, last_id)
        async with services.db.transaction() as transaction:
            await transaction.connection.execute(_SET_CURSOR, tenant_id, last_at, last_id)
        total += len(closed)
        if len(closed) < batch:
            return total
    return total


async def reset(services: Any, tenant_id: uuid.UUID) -> None:
    """Forget the catch-up cursor: the next run measures every closed conversation again
    (after a change of business hours, time zone or SLA targets)."""
    async with services.db.transaction() as transaction:
        await transaction.connection.execute(_RESET_CURSOR, tenant_id)
