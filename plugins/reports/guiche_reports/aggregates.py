"""Aggregates answered from the hourly rollups: counts, means and p50/p90 of every time,
SLA %, reopen rate and messages, grouped by day, hour of day, agent, department, channel
or tabulation over a range of local days.

Two queries whatever the range: the sums per group, and the merged histograms per
(group, measure), from which p50/p90 are read (`store.percentile`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from guiche_reports.metrics import MEASURES
from guiche_reports.store import percentile
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

_SUMS = (
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


def _time_figures(row: dict[str, Any], hists: dict[str, dict[int, int]], m: str) -> dict[str, Any]:
    n = row[f"{m}_n"]
    hist = hists.get(m, {})
    return {
        "count": n,
        "mean": _ratio(row[f"{m}_sum"], n),
        "p50": percentile(hist, 0.5),
        "p90": percentile(hist, 0.9),
    }


def _figures(row: dict[str, Any], hists: dict[str, dict[int, int]]) -> dict[str, Any]:
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


async def aggregate(
    services: Any, scope: Scope, by: str, *, percentiles: bool = True
) -> list[dict[str, Any]]:
    """One item per group (`key`: a date, an hour 0-23, an id, or null for no value).

    Without `percentiles` the histogram query is skipped (p50/p90 come back null): it is
    most of the cost of a long range."""
    key = GROUPS[by]
    where, args = scope.where()
    sums = ", ".join(f"sum({c})::float8 AS {c}" for c in _SUMS)
    totals_sql = (
        f"SELECT {key} AS key, {sums} FROM reports_hourly WHERE {where} GROUP BY 1 ORDER BY 1"
    )
    hist_sql = " UNION ALL ".join(
        f"SELECT {key} AS key, '{m}' AS m, h.key::int AS b, sum(h.value::int) AS n "
        f"FROM reports_hourly r CROSS JOIN LATERAL jsonb_each_text(r.{m}_hist) h "
        f"WHERE {where} GROUP BY 1, 2, 3"
        for m in MEASURES
    )
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        totals = await conn.fetch(totals_sql, *args)
        hist_rows = await conn.fetch(hist_sql, *args) if percentiles else []
    hists: dict[Any, dict[str, dict[int, int]]] = {}
    for h in hist_rows:
        hists.setdefault(h["key"], {}).setdefault(h["m"], {})[h["b"]] = int(h["n"])
    items = []
    for t in totals:
        row = _integers(dict(t))
        value = t["key"]
        items.append(
            {
                "key": value.isoformat() if isinstance(value, dt.date) else _plain(value),
                **_figures(row, hists.get(value, {})),
            }
        )
    return items


def _integers(row: dict[str, Any]) -> dict[str, Any]:
    """Sums of counts back to integers (they come back as float8 with the time sums)."""
    return {
        c: (v if c.endswith("_sum") or c.startswith("response_sum") or c == "key" else int(v or 0))
        for c, v in row.items()
    }


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value
