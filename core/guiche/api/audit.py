"""Read APIs for admins: the audit trail and the raw provider usage (cost) rows.

Both are the company's own rows only (`owned()`), newest first with the usual
`(created_at, id)` cursor; the reports' aggregates are built elsewhere, these are the
rows as recorded. `since` is inclusive and `until` exclusive, both with a time zone.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any

from aiohttp import web
from piccolo.query import Select
from piccolo.table import Table
from pydantic import AwareDatetime, BaseModel, StringConstraints, model_validator

from guiche.auth.principal import current_principal
from guiche.http.endpoint import endpoint
from guiche.http.pagination import Page, PageQuery, paginate
from guiche.models import AuditLog, ProviderUsage
from guiche.tenancy.scope import owned

routes = web.RouteTableDef()


class PeriodQuery(PageQuery):
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PeriodQuery:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


def in_period(select: Select, table: type[Table], query: PeriodQuery) -> Select:
    created = table.created_at  # type: ignore[attr-defined]
    if query.since is not None:
        select = select.where(created >= query.since)
    if query.until is not None:
        select = select.where(created < query.until)
    return select


class AuditQuery(PeriodQuery):
    actor_id: uuid.UUID | None = None
    action: Annotated[str, StringConstraints(min_length=1, max_length=80)] | None = None
    target_id: uuid.UUID | None = None


class AuditEntryOut(BaseModel):
    id: int
    actor_id: uuid.UUID | None
    actor_name: str | None
    action: str
    target_type: str
    target_id: uuid.UUID | None
    data: dict[str, Any]
    created_at: dt.datetime


@routes.get("/api/v1/audit")
@endpoint(
    "audit.read",
    query=AuditQuery,
    response=Page[AuditEntryOut],
    summary="The company's audit trail, newest first (filters: actor, action, target, period)",
    tags=("audit",),
)
async def list_audit(request: web.Request, *, query: AuditQuery) -> Page[AuditEntryOut]:
    principal = current_principal(request)
    select = owned(
        AuditLog,
        principal.tenant_id,
        AuditLog.id,
        AuditLog.actor.as_alias("actor_id"),
        AuditLog.actor.name.as_alias("actor_name"),
        AuditLog.action,
        AuditLog.target_type,
        AuditLog.target_id,
        AuditLog.data,
        AuditLog.created_at,
    ).output(load_json=True)
    if query.actor_id is not None:
        select = select.where(AuditLog.actor == query.actor_id)
    if query.action is not None:
        select = select.where(AuditLog.action == query.action)
    if query.target_id is not None:
        select = select.where(AuditLog.target_id == query.target_id)
    rows, cursor = await paginate(in_period(select, AuditLog, query), AuditLog, query, int)
    return Page[AuditEntryOut](
        items=[AuditEntryOut.model_validate(row) for row in rows], next_cursor=cursor
    )


class UsageQuery(PeriodQuery):
    channel_id: uuid.UUID | None = None


class ProviderUsageOut(BaseModel):
    id: uuid.UUID
    channel_id: uuid.UUID | None
    message_id: uuid.UUID | None
    provider_message_id: str | None
    pricing_model: str
    category: str
    billable: bool
    cost: Decimal | None
    currency: str
    details: dict[str, Any]
    origin: str | None = None  # what sent the message (`campaign:<id>`), None when untagged
    created_at: dt.datetime


@routes.get("/api/v1/provider-usage")
@endpoint(
    "provider_usage.read",
    query=UsageQuery,
    response=Page[ProviderUsageOut],
    summary="Provider usage (pricing) rows as recorded, newest first (filters: channel, period)",
    tags=("audit",),
)
async def list_provider_usage(request: web.Request, *, query: UsageQuery) -> Page[ProviderUsageOut]:
    principal = current_principal(request)
    select = owned(
        ProviderUsage,
        principal.tenant_id,
        ProviderUsage.id,
        ProviderUsage.channel.as_alias("channel_id"),
        ProviderUsage.message_id,
        ProviderUsage.provider_message_id,
        ProviderUsage.pricing_model,
        ProviderUsage.category,
        ProviderUsage.billable,
        ProviderUsage.cost,
        ProviderUsage.currency,
        ProviderUsage.details,
        ProviderUsage.origin,
        ProviderUsage.created_at,
    ).output(load_json=True)
    if query.channel_id is not None:
        select = select.where(ProviderUsage.channel == query.channel_id)
    rows, cursor = await paginate(in_period(select, ProviderUsage, query), ProviderUsage, query)
    return Page[ProviderUsageOut](
        items=[ProviderUsageOut.model_validate(row) for row in rows], next_cursor=cursor
    )
