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

from guiche.plugin import closed_conversations, conversation_timelines, use_generic_plans
from guiche_reports.calendar import Calendar
from guiche_reports.config import ReportsSettings
from guiche_reports.histogram import bucket, encode, encode_packed, packed, packed_counts
from guiche_reports.metrics import MEASURES, Metrics, measure

METRIC_COLUMNS = (
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
"""A metrics row's columns, in the order `store_rows` takes them."""

_UPSERT = f"""
INSERT INTO reports_conversations ({", ".join(METRIC_COLUMNS)}, updated_at)
VALUES ({", ".join(f"${i}" for i in range(1, len(METRIC_COLUMNS) + 1))}, now())
ON CONFLICT (tenant, conversation) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in METRIC_COLUMNS[2:])}, updated_at = now()
"""

_OLD_ROWS = f"""
SELECT {", ".join(METRIC_COLUMNS)} FROM reports_conversations
WHERE tenant = $1 AND conversation = ANY($2::uuid[])
"""

_CONVERSATION_LOCKS = """
SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/c/' || c, 0)) FROM unnest($2::text[]) c
"""

_DELETE = """
DELETE FROM reports_conversations WHERE tenant = $1 AND conversation = ANY($2::uuid[])
"""

_DAY_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2::text, 0))"

_DAY_ROWS = f"""
SELECT {", ".join(METRIC_COLUMNS)} FROM reports_conversations WHERE tenant = $1 AND day = $2
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
combination of them. Only the hour of day with another dimension needs the hourly rows
(a department x agent x hour kind would answer an agent's or a supervisor's figures by
hour, but doubled the block rows at the benchmark's size)."""
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
_NONE = "'00000000-0000-0000-0000-000000000000'::uuid"
_HOURLY_MATCH = f"""
FROM unnest($3::smallint[], $4::uuid[], $5::uuid[], $6::uuid[], $7::uuid[])
    AS k(hour, agent, department, channel, tabulation)
WHERE h.tenant = $1 AND h.day = $2 AND h.hour = k.hour
{"".join(f" AND coalesce(h.{c}, {_NONE}) = coalesce(k.{c}, {_NONE})" for c in _ROLLUP_KEY[1:])}
"""
_HOURLY_GROUPS = (
    f"SELECT {', '.join(f'h.{c}' for c in (*_ROLLUP_KEY, *_FIGURES))} FROM reports_hourly h, "
    + _HOURLY_MATCH.removeprefix("\nFROM ")
)
_DELETE_HOURLY_GROUPS = "DELETE FROM reports_hourly h USING " + _HOURLY_MATCH.removeprefix(
    "\nFROM "
)
_BLOCK_MATCH = """
tenant = $1 AND level = $5 AND start = $2
AND (dim, key) IN (SELECT * FROM unnest($3::smallint[], $4::text[]))
"""
_BLOCK_GROUPS = f"SELECT dim, key, {', '.join(_FIGURES)} FROM reports_blocks WHERE {_BLOCK_MATCH}"
_DELETE_BLOCK_GROUPS = f"DELETE FROM reports_blocks WHERE {_BLOCK_MATCH}"
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
    await store_rows(services, tenant_id, rows, [c for c in conversation_ids if c not in stored])
    return len(rows)


async def store_rows(
    services: Any,
    tenant_id: uuid.UUID,
    rows: Sequence[tuple[Any, ...]],
    gone: Sequence[uuid.UUID],
) -> None:
    """Store these metrics rows (`METRIC_COLUMNS` order) and delete the rows of `gone`,
    updating the rollups by their difference: each old row's contribution taken out of its
    hourly and level-0 groups, each new one's added, so a close costs the groups it
    touches, not its day; for days before the frontier, the same in every block above.
    One transaction.

    Locks, always in this order: the conversations (so two refreshes of one conversation
    never both count it), the frontier (shared), the days (sorted), the blocks above
    (by level, then start). A full day rebuild (`rebuild_day`) takes the same day lock and
    a block's rebuild from its halves the same block lock, so each sees the other's
    changes whole."""
    ids = sorted({row[1] for row in rows} | set(gone), key=str)
    if not ids:
        return
    new = [dict(zip(METRIC_COLUMNS, row, strict=True)) for row in rows]
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        await use_generic_plans(conn)  # rows written one by one, each with its key checks
        await conn.execute(_CONVERSATION_LOCKS, str(tenant_id), [str(i) for i in ids])
        old = await conn.fetch(_OLD_ROWS, tenant_id, ids)
        await conn.execute(_FRONTIER_LOCK_SHARED, str(tenant_id))
        frontier = await conn.fetchval(_FRONTIER, tenant_id)
        days = sorted({r["day"] for r in old} | {r["day"] for r in new})
        for day in days:
            await conn.execute(_DAY_LOCK, str(tenant_id), day.isoformat())
        if gone:
            await conn.execute(_DELETE, tenant_id, list(gone))
        if rows:
            await conn.executemany(_UPSERT, rows)
        applied = {
            day: await _apply_day(
                conn,
                tenant_id,
                day,
                [r for r in old if r["day"] == day],
                [r for r in new if r["day"] == day],
            )
            for day in days
        }
        if frontier is not None:
            past = {day: done for day, done in applied.items() if day < frontier}
            await _apply_above(conn, tenant_id, past)


class _Group:
    """The sums and histograms of some metrics rows (or of some rollup rows, merged)."""

    __slots__ = ("hists", "packed", "sums")

    def __init__(self) -> None:
        self.sums: dict[str, float] = {c: 0.0 if "_sum" in c else 0 for c in SUMS}
        self.hists: dict[str, dict[int, int]] = {m: {} for m in MEASURES}
        self.packed: dict[str, int] = dict.fromkeys(MEASURES, 0)

    def add_row(self, r: Any, buckets: list[tuple[str, float, int]], sign: int = 1) -> None:
        """One metrics row (`sign` -1: taken out); `buckets`: its (measure, time, bucket)
        for each time it has."""
        s = self.sums
        s["conversations"] += sign
        s["reopened"] += sign if r["reopens"] else 0
        s["transfers"] += sign * r["transfers"]
        if r["sla_met"] is not None:
            s["sla_counted"] += sign
            s["sla_met"] += sign if r["sla_met"] else 0
        s["messages_in"] += sign * r["messages_in"]
        s["messages_out"] += sign * r["messages_out"]
        s["response_sum_s"] += sign * r["response_sum_s"]
        s["response_sum_bs"] += sign * r["response_sum_bs"]
        s["response_count"] += sign * r["response_count"]
        for m, value, b in buckets:
            s[f"{m}_n"] += sign
            s[f"{m}_sum"] += sign * value
            hist = self.hists[m]
            hist[b] = hist.get(b, 0) + sign

    def add_rollup(self, r: Any) -> None:
        """One stored rollup row (sums and stored histograms)."""
        s = self.sums
        for c in SUMS:
            s[c] += r[c]
        for m in MEASURES:
            self.packed[m] += packed(r[f"{m}_hist"])

    def add_group(self, other: _Group) -> None:
        """Another delta's sums and (signed) histogram counts."""
        for c in SUMS:
            self.sums[c] += other.sums[c]
        for m in MEASURES:
            hist = self.hists[m]
            for b, n in other.hists[m].items():
                hist[b] = hist.get(b, 0) + n

    def add_delta(self, delta: _Group) -> None:
        """A delta's sums and (signed) histogram counts, onto stored rows added here."""
        for c in SUMS:
            self.sums[c] += delta.sums[c]
        for m in MEASURES:
            self.packed[m] += packed_counts(delta.hists[m])

    def consistent(self) -> bool:
        """No count below zero (a delta taken from a group that never held the row)."""
        return self.sums["conversations"] >= 0 and all(v >= 0 for v in self.packed.values())

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


def _add_to_groups(
    r: Any,
    hourly: dict[tuple[Any, ...], _Group],
    blocks: dict[tuple[int, str], _Group],
    sign: int = 1,
) -> None:
    """One metrics row into its full-key hourly group and its level-0 group of each kind."""
    buckets = _buckets(r)
    key = tuple(r[k] for k in _ROLLUP_KEY)
    (hourly.get(key) or hourly.setdefault(key, _Group())).add_row(r, buckets, sign)
    for dim, names in KINDS.items():
        bkey = (dim, "|".join(_text(r[name]) for name in names))
        (blocks.get(bkey) or blocks.setdefault(bkey, _Group())).add_row(r, buckets, sign)


def _rollups(
    tenant_id: uuid.UUID, day: dt.date, rows: Iterable[Any]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """A day's hourly rollup rows (full key) and its level-0 block rows (one per key of
    each kind)."""
    hourly: dict[tuple[Any, ...], _Group] = {}
    blocks: dict[tuple[int, str], _Group] = {}
    for r in rows:
        _add_to_groups(r, hourly, blocks)
    return (
        [(tenant_id, day, *key, *g.values()) for key, g in hourly.items()],
        [(tenant_id, dim, 0, day, key, *g.values()) for (dim, key), g in blocks.items()],
    )


async def _merged_blocks(
    conn: Any,
    tenant_id: uuid.UUID,
    level: int,
    start: dt.date,
    deltas: dict[tuple[int, str], _Group],
) -> dict[tuple[int, str], _Group]:
    """The stored block rows of these keys with their deltas added."""
    keys = list(deltas)
    merged = {k: _Group() for k in keys}
    found = await conn.fetch(
        _BLOCK_GROUPS, tenant_id, start, [d for d, _ in keys], [k for _, k in keys], level
    )
    for r in found:
        merged[(r["dim"], r["key"])].add_rollup(r)
    for k, g in merged.items():
        g.add_delta(deltas[k])
    return merged


async def _write_blocks(
    conn: Any,
    tenant_id: uuid.UUID,
    level: int,
    start: dt.date,
    merged: dict[tuple[int, str], _Group],
) -> None:
    keys = list(merged)
    await conn.execute(
        _DELETE_BLOCK_GROUPS, tenant_id, start, [d for d, _ in keys], [k for _, k in keys], level
    )
    rows = [
        (tenant_id, dim, level, start, key, *g.values())
        for (dim, key), g in merged.items()
        if g.sums["conversations"] > 0
    ]
    if rows:
        await conn.executemany(_BLOCK_INSERT, rows)


async def _apply_day(
    conn: Any, tenant_id: uuid.UUID, day: dt.date, removed: list[Any], added: list[Any]
) -> tuple[dict[tuple[int, str], _Group], bool]:
    """Take `removed` rows out of the day's hourly and level-0 groups and add `added` ones
    (under the day's lock): only the groups they touch are read and written; a group left
    without conversations is deleted. Rollups that do not hold a removed row (written by
    hand) make the day rebuilt whole from its rows instead. Returns the block deltas (for
    the blocks above) and whether the day was rebuilt whole."""
    hourly: dict[tuple[Any, ...], _Group] = {}
    blocks: dict[tuple[int, str], _Group] = {}
    for sign, rows in ((-1, removed), (1, added)):
        for r in rows:
            _add_to_groups(r, hourly, blocks, sign)
    hkeys = list(hourly)
    harg = [[k[i] for k in hkeys] for i in range(len(_ROLLUP_KEY))]
    merged_h = {k: _Group() for k in hkeys}
    for r in await conn.fetch(_HOURLY_GROUPS, tenant_id, day, *harg):
        merged_h[tuple(r[k] for k in _ROLLUP_KEY)].add_rollup(r)
    for k, g in merged_h.items():
        g.add_delta(hourly[k])
    merged_b = await _merged_blocks(conn, tenant_id, 0, day, blocks)
    if not all(g.consistent() for g in (*merged_h.values(), *merged_b.values())):
        await _rebuild_day_rows(conn, tenant_id, day)
        return blocks, True
    await conn.execute(_DELETE_HOURLY_GROUPS, tenant_id, day, *harg)
    hrows = [
        (tenant_id, day, *k, *g.values())
        for k, g in merged_h.items()
        if g.sums["conversations"] > 0
    ]
    if hrows:
        await conn.executemany(_HOURLY_INSERT, hrows)
    await _write_blocks(conn, tenant_id, 0, day, merged_b)
    return blocks, False


async def _apply_above(
    conn: Any,
    tenant_id: uuid.UUID,
    applied: dict[dt.date, tuple[dict[tuple[int, str], _Group], bool]],
) -> None:
    """The days' block deltas added to every block above them, level by level, each block
    once (its deltas summed over the days) under the block's lock. A block whose rows do
    not hold what is taken out, or above a day rebuilt whole, is rebuilt from its two
    halves (already updated in this transaction), and so is its parent."""
    above: dict[tuple[int, dt.date], dict[tuple[int, str], _Group]] = {}
    whole: set[tuple[int, dt.date]] = set()
    for day, (deltas, rebuilt) in applied.items():
        if rebuilt:
            whole.add((1, block_start(day, 1)))
            continue
        for level in range(1, MAX_LEVEL + 1):
            target = above.setdefault((level, block_start(day, level)), {})
            for k, delta in deltas.items():
                (target.get(k) or target.setdefault(k, _Group())).add_group(delta)
    for level in range(1, MAX_LEVEL + 1):
        starts = {start for (lv, start) in (*above, *whole) if lv == level}
        for start in sorted(starts):
            if (level, start) not in whole:
                await conn.execute(_DAY_LOCK, str(tenant_id), f"L{level}/{start.isoformat()}")
                merged = await _merged_blocks(conn, tenant_id, level, start, above[level, start])
                if all(g.consistent() for g in merged.values()):
                    await _write_blocks(conn, tenant_id, level, start, merged)
                    continue
            await _rebuild_block(conn, tenant_id, level, start)
            if level < MAX_LEVEL:
                whole.add((level + 1, block_start(start, level + 1)))


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
    await _rebuild_above(services, tenant_id, past)


async def _rebuild_above(services: Any, tenant_id: uuid.UUID, past: Iterable[dt.date]) -> None:
    """Every block above these days (days before the frontier), each once, level by level,
    each in its own transaction from its two halves."""
    past = list(past)
    for level in range(1, MAX_LEVEL + 1):
        for start in sorted({block_start(day, level) for day in past}):
            async with services.db.transaction() as transaction:
                await use_generic_plans(transaction.connection)
                await _rebuild_block(transaction.connection, tenant_id, level, start)


async def _rebuild_day(services: Any, tenant_id: uuid.UUID, day: dt.date) -> dt.date | None:
    """One day's rebuild; returns the frontier as it stood (read under its shared lock, so
    `advance` either ran before and this day's blocks are ours to rebuild, or runs after
    and reads this day's committed rows)."""
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        await use_generic_plans(conn)  # a day's rows written one by one
        await conn.execute(_FRONTIER_LOCK_SHARED, str(tenant_id))
        frontier = await conn.fetchval(_FRONTIER, tenant_id)
        await conn.execute(_DAY_LOCK, str(tenant_id), day.isoformat())
        await _rebuild_day_rows(conn, tenant_id, day)
    return frontier


async def _rebuild_day_rows(conn: Any, tenant_id: uuid.UUID, day: dt.date) -> None:
    """A day's hourly rows and level-0 blocks from its metrics rows (its lock held)."""
    rows = await conn.fetch(_DAY_ROWS, tenant_id, day)
    await conn.execute("DELETE FROM reports_hourly WHERE tenant = $1 AND day = $2", tenant_id, day)
    await conn.execute(_DROP_BLOCK, tenant_id, 0, day)
    hourly, blocks = _rollups(tenant_id, day, rows)
    if hourly:
        await conn.executemany(_HOURLY_INSERT, hourly)
    if blocks:
        await conn.executemany(_BLOCK_INSERT, blocks)


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
        await use_generic_plans(conn)  # every block above the days since the frontier
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
