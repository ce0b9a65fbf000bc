"""Keeping the metrics table and its rollups true, incrementally.

`refresh` recomputes the metrics rows of some conversations from their timelines (core's
`conversation_timelines`), then rebuilds the rollups of every local day a row entered or
left. A day's rollups are rebuilt whole from that day's metrics rows under a lock on
(tenant, day), so concurrent closes and the catch-up task never double count, and a
repeated run changes nothing.

Two rollup tables: `reports_hourly` (per local day and hour x agent x department x
channel x tabulation: any combination of filters) and `reports_blocks` (per key of each
kind, `KINDS`: one dimension, a pair, or all four ids, over aligned blocks of 2**level
days, level 0 = one day): a range of days
is a handful of blocks (`blocks_of`), so the common aggregates read a few hundred rows
whatever the range. A block is rebuilt from its two halves whenever a day under it is.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from guiche.plugin import closed_conversations, conversation_timelines
from guiche_reports.calendar import Calendar
from guiche_reports.config import ReportsSettings
from guiche_reports.histogram import bucket, encode, encode_packed, packed
from guiche_reports.metrics import MEASURES, Metrics, measure

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
SUMS = (
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
    *(f"{m}_{part}" for m in MEASURES for part in ("n", "sum")),
)
"""The additive columns of every rollup row (hourly and block)."""
HISTS = tuple(f"{m}_hist" for m in MEASURES)
_FIGURES = (*SUMS, *HISTS)
_HOURLY_COLUMNS = ("tenant", "day", *_ROLLUP_KEY, *_FIGURES)
_HOURLY_INSERT = f"""
INSERT INTO reports_hourly ({", ".join(_HOURLY_COLUMNS)})
VALUES ({", ".join(f"${i}" for i in range(1, len(_HOURLY_COLUMNS) + 1))})
"""

KINDS: dict[int, tuple[str, ...]] = {
    0: (),
    1: ("agent",),
    2: ("department",),
    3: ("channel",),
    4: ("tabulation",),
    5: ("hour",),
    6: ("department", "agent"),
    7: ("department", "channel"),
    8: ("department", "tabulation"),
    9: ("agent", "channel"),
    10: ("agent", "tabulation"),
    11: ("channel", "tabulation"),
    12: ("department", "agent", "channel", "tabulation"),
}
"""The block table's kinds (`dim`): the dimensions a block row is keyed by. Its `key` is
their values (ids, or the hour of day) as text joined by '|', '' for no value (the total's
key is ''). Every pair of agent, department, channel and tabulation has its kind (a
supervisor's "own or my departments" is a question on department and agent; an agent's
figures by tabulation one on agent and tabulation), and the four together answer any
combination of them; only the hour of day with another dimension needs the hourly rows."""
MAX_LEVEL = 9
"""Blocks span 2**level days, level 0 to 9 (512 days); a longer range takes more of them."""
_BLOCK_COLUMNS = ("tenant", "dim", "level", "start", "key", *_FIGURES)
_BLOCK_INSERT = f"""
INSERT INTO reports_blocks ({", ".join(_BLOCK_COLUMNS)})
VALUES ({", ".join(f"${i}" for i in range(1, len(_BLOCK_COLUMNS) + 1))})
"""
_CHILDREN = f"""
SELECT dim, key, {", ".join(_FIGURES)} FROM reports_blocks
WHERE tenant = $1 AND level = $2 AND start = ANY($3::date[])
"""
_DROP_BLOCK = "DELETE FROM reports_blocks WHERE tenant = $1 AND level = $2 AND start = $3"
_FRONTIER = "SELECT day FROM reports_frontier WHERE tenant = $1"
_SET_FRONTIER = """
INSERT INTO reports_frontier (tenant, day) VALUES ($1, $2)
ON CONFLICT (tenant) DO UPDATE SET day = EXCLUDED.day
"""
_FRONTIER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/frontier', 0))"
_FRONTIER_LOCK_SHARED = (
    "SELECT pg_advisory_xact_lock_shared(hashtextextended($1::text || '/frontier', 0))"
)

_CURSOR = "SELECT closed_at, conversation FROM reports_cursor WHERE tenant = $1"
_SET_CURSOR = """
INSERT INTO reports_cursor (tenant, closed_at, conversation) VALUES ($1, $2, $3)
ON CONFLICT (tenant) DO UPDATE SET closed_at = EXCLUDED.closed_at,
    conversation = EXCLUDED.conversation
"""
_RESET_CURSOR = "DELETE FROM reports_cursor WHERE tenant = $1"


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
    await rebuild_days(services, tenant_id, days)
    return len(rows)


class _Group:
    """The sums and histograms of some metrics rows (or of some rollup rows, merged)."""

    __slots__ = ("hists", "packed", "sums")

    def __init__(self) -> None:
        self.sums: dict[str, float] = {c: 0.0 if "_sum" in c else 0 for c in SUMS}
        self.hists: dict[str, dict[int, int]] = {m: {} for m in MEASURES}
        self.packed: dict[str, int] = dict.fromkeys(MEASURES, 0)

    def add_row(self, r: Any, buckets: list[tuple[str, float, int]]) -> None:
        """One metrics row; `buckets`: its (measure, time, bucket) for each time it has."""
        s = self.sums
        s["conversations"] += 1
        s["reopened"] += 1 if r["reopens"] else 0
        s["transfers"] += r["transfers"]
        if r["sla_met"] is not None:
            s["sla_counted"] += 1
            s["sla_met"] += 1 if r["sla_met"] else 0
        s["messages_in"] += r["messages_in"]
        s["messages_out"] += r["messages_out"]
        s["response_sum_s"] += r["response_sum_s"]
        s["response_sum_bs"] += r["response_sum_bs"]
        s["response_count"] += r["response_count"]
        for m, value, b in buckets:
            s[f"{m}_n"] += 1
            s[f"{m}_sum"] += value
            hist = self.hists[m]
            hist[b] = hist.get(b, 0) + 1

    def add_rollup(self, r: Any) -> None:
        """One stored rollup row (sums and stored histograms)."""
        s = self.sums
        for c in SUMS:
            s[c] += r[c]
        for m in MEASURES:
            self.packed[m] += packed(r[f"{m}_hist"])

    def values(self) -> list[Any]:
        """The row's `_FIGURES`, histograms in their stored form."""
        hists = [
            encode(self.hists[m]) if self.hists[m] else encode_packed(self.packed[m])
            for m in MEASURES
        ]
        return [*(self.sums[c] for c in SUMS), *hists]


def _buckets(r: Any) -> list[tuple[str, float, int]]:
    return [(m, r[m], bucket(r[m])) for m in MEASURES if r[m] is not None]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _rollups(
    tenant_id: uuid.UUID, day: dt.date, rows: Iterable[Any]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """A day's hourly rollup rows (full key) and its level-0 block rows (one per key of
    each kind)."""
    hourly: dict[tuple[Any, ...], _Group] = {}
    blocks: dict[tuple[int, str], _Group] = {}
    for r in rows:
        buckets = _buckets(r)
        key = tuple(r[k] for k in _ROLLUP_KEY)
        (hourly.get(key) or hourly.setdefault(key, _Group())).add_row(r, buckets)
        for dim, names in KINDS.items():
            bkey = (dim, "|".join(_text(r[name]) for name in names))
            (blocks.get(bkey) or blocks.setdefault(bkey, _Group())).add_row(r, buckets)
    return (
        [(tenant_id, day, *key, *g.values()) for key, g in hourly.items()],
        [(tenant_id, dim, 0, day, key, *g.values()) for (dim, key), g in blocks.items()],
    )


def block_start(day: dt.date, level: int) -> dt.date:
    """The first day of the level's block holding `day` (blocks aligned on day ordinals)."""
    return dt.date.fromordinal(day.toordinal() >> level << level)


def blocks_of(first: dt.date, last: dt.date) -> list[tuple[int, dt.date]]:
    """The fewest aligned blocks (level, start) covering `first`..`last` exactly: at most
    two per level, so a year takes about 16 whatever the data."""
    low, high = first.toordinal(), last.toordinal() + 1
    out: list[tuple[int, dt.date]] = []
    while low < high:
        level = 0
        while (
            level < MAX_LEVEL and low % (1 << (level + 1)) == 0 and low + (1 << (level + 1)) <= high
        ):
            level += 1
        out.append((level, dt.date.fromordinal(low)))
        low += 1 << level
    return out


async def rebuild_day(services: Any, tenant_id: uuid.UUID, day: dt.date) -> None:
    """Rebuild one local day's rollups (and the blocks above it, for a day before the
    frontier)."""
    await rebuild_days(services, tenant_id, [day])


async def rebuild_days(services: Any, tenant_id: uuid.UUID, days: Iterable[dt.date]) -> None:
    """Rebuild these local days' hourly rollups and level-0 blocks from their metrics rows,
    then, for the days before the company's frontier, each block above them once (level
    by level, each from its two halves). Days from the frontier on (today: every live
    close) need no block above them: aggregates read those days' level-0 rows."""
    past: list[dt.date] = []
    for day in sorted(set(days)):
        frontier = await _rebuild_day(services, tenant_id, day)
        if frontier is not None and day < frontier:
            past.append(day)
    for level in range(1, MAX_LEVEL + 1):
        for start in sorted({block_start(day, level) for day in past}):
            async with services.db.transaction() as transaction:
                await _rebuild_block(transaction.connection, tenant_id, level, start)


async def _rebuild_day(services: Any, tenant_id: uuid.UUID, day: dt.date) -> dt.date | None:
    """One day's rebuild; returns the frontier as it stood (read under its shared lock, so
    `advance` either ran before and this day's blocks are ours to rebuild, or runs after
    and reads this day's committed rows)."""
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        await conn.execute(_FRONTIER_LOCK_SHARED, str(tenant_id))
        frontier = await conn.fetchval(_FRONTIER, tenant_id)
        await conn.execute(_DAY_LOCK, str(tenant_id), day.isoformat())
        rows = await conn.fetch(_DAY_ROWS, tenant_id, day)
        await conn.execute(
            "DELETE FROM reports_hourly WHERE tenant = $1 AND day = $2", tenant_id, day
        )
        await conn.execute(_DROP_BLOCK, tenant_id, 0, day)
        hourly, blocks = _rollups(tenant_id, day, rows)
        if hourly:
            await conn.executemany(_HOURLY_INSERT, hourly)
        if blocks:
            await conn.executemany(_BLOCK_INSERT, blocks)
    return frontier


async def _rebuild_block(conn: Any, tenant_id: uuid.UUID, level: int, start: dt.date) -> None:
    """A block from its two halves, under the block's lock: the lock is taken after the
    half that changed was committed (or in the transaction that wrote it), so whichever
    rebuild of a block runs last reads every half (concurrent rebuilds never lose one)."""
    halves = [start, start + dt.timedelta(days=1 << (level - 1))]
    await conn.execute(_DAY_LOCK, str(tenant_id), f"L{level}/{start.isoformat()}")
    groups: dict[tuple[int, str], _Group] = {}
    for r in await conn.fetch(_CHILDREN, tenant_id, level - 1, halves):
        child = (r["dim"], r["key"])
        (groups.get(child) or groups.setdefault(child, _Group())).add_rollup(r)
    await conn.execute(_DROP_BLOCK, tenant_id, level, start)
    if groups:
        rows = [
            (tenant_id, dim, level, start, key, *g.values()) for (dim, key), g in groups.items()
        ]
        await conn.executemany(_BLOCK_INSERT, rows)


async def frontier_of(conn: Any, tenant_id: uuid.UUID) -> dt.date | None:
    """The first day whose blocks above level 0 may be incomplete (None: every day)."""
    return await conn.fetchval(_FRONTIER, tenant_id)


async def advance(services: Any, tenant_id: uuid.UUID, today: dt.date) -> bool:
    """Complete the blocks above level 0 of every day from the frontier to yesterday and
    move the frontier to `today` (run by the periodic task; at most once a day does work).

    One transaction under the frontier's exclusive lock: a day rebuilt meanwhile either
    committed before (its rows are read here) or waits and then sees the new frontier
    (and rebuilds its blocks itself)."""
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        await conn.execute(_FRONTIER_LOCK, str(tenant_id))
        frontier = await conn.fetchval(_FRONTIER, tenant_id)
        if frontier is not None and frontier >= today:
            return False
        first = frontier or await conn.fetchval(
            "SELECT min(start) FROM reports_blocks WHERE tenant = $1 AND level = 0", tenant_id
        )
        if first is not None and first < today:
            days = [first + dt.timedelta(days=i) for i in range((today - first).days)]
            for level in range(1, MAX_LEVEL + 1):
                for start in sorted({block_start(day, level) for day in days}):
                    await _rebuild_block(conn, tenant_id, level, start)
        await conn.execute(_SET_FRONTIER, tenant_id, today)
    return True


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
