"""Finished conversations: the filtered, sorted, keyset-paginated list and the CSV export.

Both read the metrics table only. The list pages on `(sort value, conversation)`; the
export walks a server-side cursor and writes each fetched block to the response as it
goes, so memory stays flat at any number of rows.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from guiche.plugin import ValidationFailed
from guiche_reports.metrics import MEASURES
from guiche_reports.visibility import EVERYTHING, Visibility

SORTS = {
    "closed_at": "closed_at",
    "duration": "coalesce(duration_s, -1)",
    "waiting": "coalesce(waiting_s, -1)",
    "handling": "coalesce(handling_s, -1)",
    "first_response": "coalesce(first_response_s, -1)",
}
FILTERS = ("agent", "department", "channel", "tabulation", "contact")

_FIELDS = (
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
    "messages_in",
    "messages_out",
    "transfers",
    "reopens",
    *MEASURES,
    "response_sum_s",
    "response_count",
    "sla_met",
)
_TIMES = ("opened_at", "queued_at", "first_assigned_at", "first_agent_message_at", "closed_at")


@dataclass(frozen=True)
class Query:
    tenant_id: uuid.UUID
    first_day: dt.date | None
    last_day: dt.date | None
    filters: dict[str, uuid.UUID]
    sort: str = "closed_at"
    descending: bool = True
    visible: Visibility = EVERYTHING

    def where(self) -> tuple[list[str], list[Any]]:
        clauses = ["tenant = $1"]
        args: list[Any] = [self.tenant_id]
        if self.first_day is not None:
            args.append(self.first_day)
            clauses.append(f"day >= ${len(args)}")
        if self.last_day is not None:
            args.append(self.last_day)
            clauses.append(f"day <= ${len(args)}")
        for name in FILTERS:
            if name in self.filters:
                args.append(self.filters[name])
                clauses.append(f"{name} = ${len(args)}")
        restriction = self.visible.clause(args)
        if restriction:
            clauses.append(restriction)
        return clauses, args

    def sql(self, cursor: tuple[Any, uuid.UUID] | None, limit: int | None) -> tuple[str, list[Any]]:
        expr = SORTS[self.sort]
        clauses, args = self.where()
        if cursor is not None:
            args.extend(cursor)
            op = "<" if self.descending else ">"
            clauses.append(f"({expr}, conversation) {op} (${len(args) - 1}, ${len(args)})")
        order = "DESC" if self.descending else "ASC"
        sql = (
            f"SELECT {', '.join(_FIELDS)}, {expr} AS sort_value FROM reports_conversations "
            f"WHERE {' AND '.join(clauses)} ORDER BY {expr} {order}, conversation {order}"
        )
        if limit is not None:
            args.append(limit)
            sql += f" LIMIT ${len(args)}"
        return sql, args


def encode_cursor(value: Any, conversation: uuid.UUID) -> str:
    raw = value.isoformat() if isinstance(value, dt.datetime) else value
    return base64.urlsafe_b64encode(orjson.dumps([raw, str(conversation)])).decode()


def decode_cursor(token: str, sort: str) -> tuple[Any, uuid.UUID]:
    try:
        raw, conversation = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        value = dt.datetime.fromisoformat(raw) if sort == "closed_at" else float(raw)
        return value, uuid.UUID(conversation)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ValidationFailed(
            "Invalid cursor", details=[{"field": "cursor", "message": "invalid", "type": "cursor"}]
        ) from None


def item(row: Any) -> dict[str, Any]:
    """One finished conversation as the API shows it."""
    out = {}
    for name in _FIELDS:
        value = row[name]
        key = {"conversation": "conversation_id"}.get(name, name)
        if name in ("contact", "channel", "department", "agent", "tabulation"):
            key = f"{name}_id"
        out[key] = str(value) if isinstance(value, uuid.UUID) else value
    return out


async def page(
    services: Any, query: Query, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    after = decode_cursor(cursor, query.sort) if cursor else None
    sql, args = query.sql(after, limit + 1)
    async with services.db.transaction() as transaction:
        rows = await transaction.connection.fetch(sql, *args)
    more = len(rows) > limit
    rows = rows[:limit]
    token = encode_cursor(rows[-1]["sort_value"], rows[-1]["conversation"]) if more else None
    return [item(r) for r in rows], token


CSV_HEADER = (
    "conversation_id",
    "contact_id",
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
    "messages_in",
    "messages_out",
    "transfers",
    "reopens",
    "waiting_seconds",
    "waiting_business_seconds",
    "first_response_seconds",
    "first_response_business_seconds",
    "handling_seconds",
    "handling_business_seconds",
    "duration_seconds",
    "duration_business_seconds",
    "agent_response_mean_seconds",
    "sla_met",
)


def _local(value: dt.datetime | None, zone: Any) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _number(value: float | None, decimal_comma: bool) -> str:
    if value is None:
        return ""
    text = f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return text.replace(".", ",") if decimal_comma else text


def csv_line(
    row: Any, names: dict[str, dict[uuid.UUID, str]], zone: Any, delimiter: str
) -> list[str]:
    comma = delimiter == ";"  # pt-BR spreadsheets: `;` between fields, `,` in numbers

    def name(kind: str, value: uuid.UUID | None) -> str:
        return "" if value is None else names.get(kind, {}).get(value, str(value))

    response = row["response_sum_s"] / row["response_count"] if row["response_count"] else None
    sla = row["sla_met"]
    return [
        str(row["conversation"]),
        str(row["contact"] or ""),
        name("channel", row["channel"]),
        row["channel_type"],
        name("department", row["department"]),
        name("agent", row["agent"]),
        name("tabulation", row["tabulation"]),
        *(_local(row[t], zone) for t in _TIMES[:-1]),
        _local(row["closed_at"], zone),
        str(row["messages_in"]),
        str(row["messages_out"]),
        str(row["transfers"]),
        str(row["reopens"]),
        *(_number(row[m], comma) for m in MEASURES),
        _number(response, comma),
        "" if sla is None else ("1" if sla else "0"),
    ]


async def csv_chunks(
    services: Any,
    query: Query,
    names: dict[str, dict[uuid.UUID, str]],
    zone: Any,
    *,
    delimiter: str = ",",
    bom: bool = False,
    block: int = 2000,
) -> AsyncIterator[bytes]:
    """The export as encoded blocks: header first, then `block` rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    yield (("\ufeff" if bom else "") + buffer.getvalue()).encode()
    sql, args = query.sql(None, None)
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        cursor = await conn.cursor(sql, *args)
        while True:
            rows = await cursor.fetch(block)
            if not rows:
                break
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(csv_line(r, names, zone, delimiter) for r in rows)
            yield buffer.getvalue().encode()
