"""Aggregates answered from the rollups: counts, means and p50/p90 of every time, SLA %,
reopen rate and messages, grouped by day, hour of day, agent, department, channel or
tabulation over a range of local days.

A question is answered from `reports_blocks` by the smallest kind of block keyed by every
dimension it involves (as the grouping or as a filter; an agent's own figures are a
filter on agent, a supervisor's "own or my departments" involves agent and department):
a few hundred rows whatever the range (a year is about 16 blocks per key). Only the hour
of day together with another dimension merges the full-key hourly rollups, which costs in
proportion to the range.
Either way one query, and the same figures: sums added, histograms merged by integer
addition (`histogram.packed`) and read by bisection.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from guiche_reports.histogram import packed, percentiles
from guiche_reports.metrics import MEASURES
from guiche_reports.store import HISTS, KINDS, SUMS, blocks_of, frontier_of
from guiche_reports.visibility import EVERYTHING, Visibility

GROUPS = {
    "day": "day",
    "hour": "hour",
    "agent": "agent",
    "department": "department",
    "channel": "channel",
    "tabulation": "tabulation",
    "total": "NULL::int",
}

FILTERS = ("agent", "department", "channel", "tabulation")


@dataclass(frozen=True)
class Scope:
    """Which rollup rows count: a tenant, a range of local days, optional equal-filters."""

    tenant_id: uuid.UUID
    first_day: dt.date
    last_day: dt.date
    filters: dict[str, uuid.UUID]
    visible: Visibility = EVERYTHING

    def where(self) -> tuple[str, list[Any]]:
        clauses = ["tenant = $1", "day BETWEEN $2 AND $3"]
        args: list[Any] = [self.tenant_id, self.first_day, self.last_day]
        for name in FILTERS:
            if name in self.filters:
                args.append(self.filters[name])
                clauses.append(f"{name} = ${len(args)}")
        restriction = self.visible.clause(args)
        if restriction:
            clauses.append(restriction)
        return " AND ".join(clauses), args


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _time_figures(row: dict[str, Any], hists: dict[str, int], m: str) -> dict[str, Any]:
    n = row[f"{m}_n"]
    p50, p90 = percentiles(hists.get(m, 0), (0.5, 0.9))
    return {"count": n, "mean": _ratio(row[f"{m}_sum"], n), "p50": p50, "p90": p90}


def _figures(row: dict[str, Any], hists: dict[str, int]) -> dict[str, Any]:
    sla = _ratio(row["sla_met"], row["sla_counted"])
    out: dict[str, Any] = {
        "conversations": row["conversations"],
        "reopened": row["reopened"],
        "reopen_rate": _ratio(row["reopened"], row["conversations"]),
        "transfers": row["transfers"],
        "sla_met": row["sla_met"],
        "sla_counted": row["sla_counted"],
        "sla_pct": None if sla is None else 100.0 * sla,
        "messages_in": row["messages_in"],
        "messages_out": row["messages_out"],
        "agent_response": {
            "count": row["response_count"],
            "mean": _ratio(row["response_sum_s"], row["response_count"]),
            "mean_business": _ratio(row["response_sum_bs"], row["response_count"]),
        },
    }
    for name in ("waiting", "first_response", "handling", "duration"):
        out[name] = _time_figures(row, hists, f"{name}_s")
        out[f"{name}_business"] = _time_figures(row, hists, f"{name}_bs")
    return out


@dataclass
class _Sum:
    """One group's rollup rows added up."""

    sums: dict[str, Any]
    hists: dict[str, int]


def _merge(groups: dict[Any, _Sum], key: Any, row: Any, with_hists: bool) -> None:
    g = groups.get(key)
    if g is None:
        g = groups[key] = _Sum({c: 0 for c in SUMS}, dict.fromkeys(MEASURES, 0))
    sums = g.sums
    for c in SUMS:
        sums[c] += row[c]
    if with_hists:
        hists = g.hists
        for m in MEASURES:
            stored = row[f"{m}_hist"]
            if stored:
                hists[m] += packed(stored)


def _items(groups: dict[Any, _Sum], plain: Any) -> list[dict[str, Any]]:
    ordered = sorted(groups, key=lambda k: (k is None, k))  # NULL last, as SQL's ORDER BY
    return [{"key": plain(k), **_figures(groups[k].sums, groups[k].hists)} for k in ordered]


@dataclass(frozen=True)
class BlockPlan:
    """How the blocks answer a question: the kind read (`store.KINDS`), the equal-filters
    on its dimensions, and whether a supervisor's "own or my departments" applies."""

    kind: int
    filters: dict[str, uuid.UUID]
    own_or_departments: bool = False


NOTHING = -1
"""A plan's kind when the caller may see nothing of what was asked (another agent's)."""


def block_plan(scope: Scope, by: str) -> BlockPlan | None:
    """The smallest block kind whose dimensions hold every one the question involves (its
    grouping, its filters; an agent's own figures are a filter on agent, a supervisor's
    scope involves agent and department), with the filters to apply; None when none does
    (the hour of day with another dimension: the full-key hourly rollups)."""
    filters = dict(scope.filters)
    visible = scope.visible
    dims = set(filters) | ({by} if by not in ("day", "total") else set())
    restricted = False
    if not visible.all:
        if visible.departments_in_full and visible.departments:
            restricted = True
            dims |= {"agent", "department"}
        else:
            assert visible.user_id is not None
            if filters.setdefault("agent", visible.user_id) != visible.user_id:
                return BlockPlan(NOTHING, {})
            dims.add("agent")
    fitting = [k for k, names in KINDS.items() if dims <= set(names)]
    if not fitting:
        return None
    kind = min(fitting, key=lambda k: len(KINDS[k]))
    return BlockPlan(kind, filters, restricted)


async def aggregate(
    services: Any, scope: Scope, by: str, *, percentiles: bool = True
) -> list[dict[str, Any]]:
    """One item per group (`key`: a date, an hour 0-23, an id, or null for no value).

    Without `percentiles` the histograms are not read (p50/p90 come back null)."""
    plan = block_plan(scope, by)
    if plan is None:
        return await _from_hourly(services, scope, by, percentiles)
    if plan.kind == NOTHING:
        return []
    return await _from_blocks(services, scope, by, plan, percentiles)


def covering(first: dt.date, last: dt.date, frontier: dt.date | None) -> list[tuple[int, dt.date]]:
    """(level, start) of the blocks answering `first`..`last`: aligned blocks up to the day
    before the frontier (complete there), single days from the frontier on."""
    one = dt.timedelta(days=1)
    complete = min(last, frontier - one) if frontier is not None else first - one
    out = blocks_of(first, complete) if complete >= first else []
    day = max(first, complete + one)
    while day <= last:
        out.append((0, day))
        day += one
    return out


def _part(kind: int, name: str) -> str:
    """The SQL expression of one dimension's value in a block row's key."""
    names = KINDS[kind]
    return "b.key" if len(names) == 1 else f"split_part(b.key, '|', {names.index(name) + 1})"


def block_sql(
    scope: Scope,
    by: str,
    plan: BlockPlan,
    with_hists: bool,
    frontier: dt.date | None,
) -> tuple[str, list[Any]]:
    """The statement that reads a question's blocks (the benchmark runs it raw): the fewest
    blocks for the days before the frontier, level-0 rows for the days from it on; the
    filters and a supervisor's scope on the parts of the kind's key."""
    columns = ", ".join(("b.start", "b.key", *(f"b.{c}" for c in SUMS)))
    if with_hists:
        columns += ", " + ", ".join(f"b.{c}" for c in HISTS)
    args: list[Any] = [scope.tenant_id, plan.kind]
    if by == "day":  # one row per day and key: the level-0 blocks
        args += [scope.first_day, scope.last_day]
        sql = (
            f"SELECT {columns} FROM reports_blocks b WHERE b.tenant = $1 AND b.dim = $2"
            " AND b.level = 0 AND b.start BETWEEN $3 AND $4"
        )
    else:
        blocks = covering(scope.first_day, scope.last_day, frontier)
        args += [[level for level, _ in blocks], [start for _, start in blocks]]
        sql = (
            f"SELECT {columns} FROM unnest($3::smallint[], $4::date[]) AS r(level, start)"
            " JOIN reports_blocks b ON b.tenant = $1 AND b.dim = $2"
            " AND b.level = r.level AND b.start = r.start"
        )
    for name in KINDS[plan.kind]:
        if name in plan.filters:
            args.append(str(plan.filters[name]))
            sql += f" AND {_part(plan.kind, name)} = ${len(args)}"
    if plan.own_or_departments:
        visible = scope.visible
        args += [str(visible.user_id), [str(d) for d in visible.departments]]
        sql += (
            f" AND ({_part(plan.kind, 'agent')} = ${len(args) - 1}"
            f" OR {_part(plan.kind, 'department')} = ANY(${len(args)}::text[]))"
        )
    return sql, args


async def _from_blocks(
    services: Any,
    scope: Scope,
    by: str,
    plan: BlockPlan,
    with_hists: bool,
) -> list[dict[str, Any]]:
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        frontier = await frontier_of(conn, scope.tenant_id) if by != "day" else None
        sql, args = block_sql(scope, by, plan, with_hists, frontier)
        rows = await conn.fetch(sql, *args)
    names = KINDS[plan.kind]
    index = names.index(by) if by in names else None
    groups: dict[Any, _Sum] = {}
    for row in rows:
        if by == "day":
            key: Any = row["start"]
        elif index is None:  # the total
            key = None
        else:
            part = row["key"].split("|")[index] if len(names) > 1 else row["key"]
            key = int(part) if by == "hour" else part or None
        _merge(groups, key, row, with_hists)
    return _items(groups, lambda k: k.isoformat() if isinstance(k, dt.date) else k)


def hourly_sql(scope: Scope, by: str) -> tuple[str, str, list[Any]]:
    """The sums per group and the histograms of every matching hourly row."""
    key = GROUPS[by]
    where, args = scope.where()
    sums = ", ".join(f"sum({c})::{'float8' if '_sum' in c else 'bigint'} AS {c}" for c in SUMS)
    totals_sql = f"SELECT {key} AS key, {sums} FROM reports_hourly WHERE {where} GROUP BY 1"
    hists_sql = f"SELECT {key} AS key, {', '.join(HISTS)} FROM reports_hourly WHERE {where}"
    return totals_sql, hists_sql, args


async def _from_hourly(
    services: Any, scope: Scope, by: str, with_hists: bool
) -> list[dict[str, Any]]:
    """Sums per group in SQL; the histograms of every matching row merged here."""
    totals_sql, hists_sql, args = hourly_sql(scope, by)
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        totals = await conn.fetch(totals_sql, *args)
        rows = await conn.fetch(hists_sql, *args) if with_hists else []
    groups = {t["key"]: _Sum(dict(t), dict.fromkeys(MEASURES, 0)) for t in totals}
    for row in rows:
        hists = groups[row["key"]].hists
        for m in MEASURES:
            stored = row[f"{m}_hist"]
            if stored:
                hists[m] += packed(stored)
    return _items(groups, _plain)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value) if isinstance(value, uuid.UUID) else value
