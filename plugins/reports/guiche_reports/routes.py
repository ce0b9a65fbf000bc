"""The reports API under `/api/v1/plugins/reports/`.

Who sees what: holders of `reports.read_all` (owners, admins, supervisors, viewers) see
the whole company; everyone else (agents) sees only their own conversations and figures,
whatever filter they pass.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from guiche.plugin import (
    Forbidden,
    ValidationFailed,
    caller_of,
    endpoint,
    plugin_context,
    reference_names,
)
from guiche_reports import aggregates, costs, dashboard, listing, store
from guiche_reports.calendar import Calendar
from guiche_reports.visibility import visibility_of


def _sane(day: dt.date) -> dt.date:
    if not dt.date(2000, 1, 1) <= day <= dt.date(2200, 12, 31):
        raise ValueError("a date between 2000-01-01 and 2200-12-31")
    return day


Day = Annotated[dt.date, AfterValidator(_sane)]
"""A report day (local to the company): bounded, so date arithmetic never overflows."""

READ = "reports.read"
COSTS = "reports.costs"
LAYOUT = "reports.layout"
MANAGE = "reports.manage"

Sort = Literal[
    "closed_at",
    "-closed_at",
    "duration",
    "-duration",
    "waiting",
    "-waiting",
    "handling",
    "-handling",
    "first_response",
    "-first_response",
]


class _Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    channel_id: uuid.UUID | None = None
    tabulation_id: uuid.UUID | None = None

    def chosen(self) -> dict[str, uuid.UUID]:
        values = {
            "agent": self.agent_id,
            "department": self.department_id,
            "channel": self.channel_id,
            "tabulation": self.tabulation_id,
        }
        return {k: v for k, v in values.items() if v is not None}


class ListQuery(_Filters):
    from_: Day | None = Field(default=None, alias="from")
    to: Day | None = None
    contact_id: uuid.UUID | None = None
    sort: Sort = "-closed_at"
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = None


class ExportQuery(_Filters):
    from_: Day | None = Field(default=None, alias="from")
    to: Day | None = None
    contact_id: uuid.UUID | None = None
    sort: Sort = "-closed_at"
    delimiter: Literal[",", ";"] = ","
    bom: bool = False


class AggregateQuery(_Filters):
    from_: Day | None = Field(default=None, alias="from")
    to: Day | None = None
    by: Literal["day", "hour", "agent", "department", "channel", "tabulation", "total"] = "day"
    percentiles: bool = True


class CostQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_: Day | None = Field(default=None, alias="from")
    to: Day | None = None
    last_hours: int | None = Field(default=None, ge=1, le=24 * 31)
    by: Literal["hour", "day", "channel", "channel_type", "category", "campaign"] = "day"
    channel_type: str | None = Field(default=None, max_length=60)
    campaign_id: uuid.UUID | None = None


class CostExportQuery(CostQuery):
    delimiter: Literal[",", ";"] = ","
    bom: bool = False


class Widget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=60)
    type: str = Field(min_length=1, max_length=60)
    x: int = Field(ge=0, le=100)
    y: int = Field(ge=0, le=1000)
    w: int = Field(ge=1, le=100)
    h: int = Field(ge=1, le=100)
    options: dict[str, Any] = Field(default_factory=dict)


class LayoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    widgets: list[Widget] = Field(max_length=50)


def _range(first: dt.date | None, last: dt.date | None) -> None:
    if first is not None and last is not None and last < first:
        raise ValidationFailed(
            "`to` is before `from`",
            details=[{"field": "to", "message": "before from", "type": "range"}],
        )


async def _list_query(
    request: web.Request, services: Any, query: ListQuery | ExportQuery
) -> listing.Query:
    _range(query.from_, query.to)
    filters = query.chosen()
    if query.contact_id is not None:
        filters["contact"] = query.contact_id
    return listing.Query(
        tenant_id=caller_of(request).tenant_id,
        first_day=query.from_,
        last_day=query.to,
        filters=filters,
        sort=query.sort.lstrip("-"),
        descending=query.sort.startswith("-"),
        visible=await visibility_of(request, services),
    )


@endpoint(READ, query=ListQuery, summary="Finished conversations with their metrics")
async def list_conversations(request: web.Request, *, query: ListQuery) -> dict[str, Any]:
    ctx = await plugin_context(request)
    items, token = await listing.page(
        ctx.services, await _list_query(request, ctx.services, query), query.cursor, query.limit
    )
    return {"items": items, "next_cursor": token}


@endpoint(
    READ,
    query=ExportQuery,
    summary="Finished conversations as CSV (streamed)",
    content_type="text/csv",
)
async def export_conversations(request: web.Request, *, query: ExportQuery) -> web.StreamResponse:
    ctx = await plugin_context(request)
    q = await _list_query(request, ctx.services, query)
    names = await reference_names(ctx.services, ctx.tenant_id)
    zone = Calendar.of(ctx.settings).zone
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="conversations.csv"',
        }
    )
    await response.prepare(request)
    chunks = listing.csv_chunks(
        ctx.services, q, names, zone, delimiter=query.delimiter, bom=query.bom
    )
    async with contextlib.aclosing(chunks):  # a client gone mid-way ends the transaction here
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


@endpoint(READ, query=AggregateQuery, summary="Counts, means and p50/p90 from the rollups")
async def get_aggregates(request: web.Request, *, query: AggregateQuery) -> dict[str, Any]:
    ctx = await plugin_context(request)
    cal = Calendar.of(ctx.settings)
    last = query.to or cal.local(dt.datetime.now(dt.UTC)).date()
    first = query.from_ or last - dt.timedelta(days=29)
    _range(first, last)
    visible = await visibility_of(request, ctx.services)
    scope = aggregates.Scope(ctx.tenant_id, first, last, query.chosen(), visible)
    items = await aggregates.aggregate(ctx.services, scope, query.by, percentiles=query.percentiles)
    return {"from": first.isoformat(), "to": last.isoformat(), "by": query.by, "items": items}


async def _cost_items(
    request: web.Request, query: CostQuery
) -> tuple[dt.datetime, dt.datetime, list[dict[str, Any]]]:
    """`last_hours=24` for a rolling window; else local days `from`..`to` (default: the
    current month). `by=campaign` keys by campaign id; `campaign_id` keeps one campaign's."""
    ctx = await plugin_context(request)
    cal = Calendar.of(ctx.settings)
    now = dt.datetime.now(dt.UTC)
    if query.last_hours is not None:
        since, until = now - dt.timedelta(hours=query.last_hours), now
    else:
        today = cal.local(now).date()
        first = query.from_ or today.replace(day=1)
        last = query.to or today
        _range(first, last)
        since = dt.datetime.combine(first, dt.time(), tzinfo=cal.zone)
        until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=cal.zone)
    items = await costs.costs(
        ctx.services,
        ctx.tenant_id,
        ctx.settings,
        since,
        until,
        query.by,
        channel_type=query.channel_type,
        campaign_id=query.campaign_id,
    )
    return since, until, items


@endpoint(
    COSTS, query=CostQuery, summary="Provider cost by hour, day, channel, category or campaign"
)
async def get_costs(request: web.Request, *, query: CostQuery) -> dict[str, Any]:
    since, until, items = await _cost_items(request, query)
    return {"since": since, "until": until, "by": query.by, "items": items}


@endpoint(
    COSTS,
    query=CostExportQuery,
    summary="Provider cost as CSV (the same groups as GET costs)",
    content_type="text/csv",
)
async def export_costs(request: web.Request, *, query: CostExportQuery) -> web.Response:
    _, _, items = await _cost_items(request, query)
    return web.Response(
        body=costs.csv_bytes(items, query.by, delimiter=query.delimiter, bom=query.bom),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="costs-by-{query.by}.csv"',
        },
    )


@endpoint(READ, summary="Today's indicators and the queue now")
async def get_dashboard(request: web.Request) -> dict[str, Any]:
    ctx = await plugin_context(request)
    board = await dashboard.indicators(
        ctx.services,
        ctx.tenant_id,
        Calendar.of(ctx.settings),
        await visibility_of(request, ctx.services),
    )
    board["cloud_api_cost_24h"] = None  # the company's bill is not an agent's figure
    if caller_of(request).can(COSTS):
        now = dt.datetime.now(dt.UTC)
        cost = await costs.costs(
            ctx.services,
            ctx.tenant_id,
            ctx.settings,
            now - dt.timedelta(hours=24),
            now,
            "channel_type",
            channel_type=costs.CLOUD_API,
        )
        board["cloud_api_cost_24h"] = [
            {k: c[k] for k in ("currency", "cost", "messages", "unpriced")} for c in cost
        ]
    return board


def _person(request: web.Request) -> uuid.UUID:
    user_id = caller_of(request).user_id
    if user_id is None:
        raise Forbidden("Layouts belong to people", code="user_required")
    return user_id


@endpoint(READ, summary="The caller's dashboard layout (the default until saved)", errors=(403,))
async def get_layout(request: web.Request) -> dict[str, Any]:
    ctx = await plugin_context(request)
    return await dashboard.layout(ctx.services, ctx.tenant_id, _person(request))


@endpoint(LAYOUT, body=LayoutBody, summary="Save the caller's dashboard layout")
async def put_layout(request: web.Request, *, body: LayoutBody) -> dict[str, Any]:
    ctx = await plugin_context(request)
    return await dashboard.save_layout(
        ctx.services, ctx.tenant_id, _person(request), body.model_dump(mode="json")
    )


@endpoint(MANAGE, status=202, summary="Measure every closed conversation again")
async def rebuild(request: web.Request) -> dict[str, Any]:
    """After changing business hours, the time zone or SLA targets."""
    ctx = await plugin_context(request)
    await store.reset(ctx.services, ctx.tenant_id)
    await ctx.services.tasks.kick("reports.catch_up")
    return {"status": "scheduled"}
