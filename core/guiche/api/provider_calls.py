"""The per-channel provider call log for admins (written by guiche.provider_http.call_log).

Newest first with the usual `(created_at, id)` cursor; filters by operation, by
failures only (an HTTP status of 400 or more, or no answer at all) and by period.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, StringConstraints

from guiche.api.audit import PeriodQuery, in_period
from guiche.api.common import path_id
from guiche.auth.principal import current_principal
from guiche.http.endpoint import endpoint
from guiche.http.pagination import Page, paginate
from guiche.models import Channel, ProviderCall
from guiche.tenancy.scope import get_owned, owned

routes = web.RouteTableDef()


class CallQuery(PeriodQuery):
    operation: Annotated[str, StringConstraints(min_length=1, max_length=60)] | None = None
    failed: bool = False


class ProviderCallOut(BaseModel):
    id: int
    channel_id: uuid.UUID
    operation: str
    method: str
    target: str
    status: int | None
    latency_ms: float
    error: str | None
    created_at: dt.datetime


@routes.get("/api/v1/channels/{id}/calls")
@endpoint(
    "channels.manage",
    query=CallQuery,
    response=Page[ProviderCallOut],
    summary="The channel's provider calls, newest first: operation, status, latency, error",
    tags=("channels",),
)
async def list_provider_calls(request: web.Request, *, query: CallQuery) -> Page[ProviderCallOut]:
    principal = current_principal(request)
    channel_id = path_id(request, "channel")
    await get_owned(Channel, principal.tenant_id, channel_id, what="channel")
    select = owned(
        ProviderCall,
        principal.tenant_id,
        ProviderCall.id,
        ProviderCall.channel.as_alias("channel_id"),
        ProviderCall.operation,
        ProviderCall.method,
        ProviderCall.target,
        ProviderCall.status,
        ProviderCall.latency_ms,
        ProviderCall.error,
        ProviderCall.created_at,
    ).where(ProviderCall.channel == channel_id)
    if query.operation is not None:
        select = select.where(ProviderCall.operation == query.operation)
    if query.failed:
        select = select.where(ProviderCall.status.is_null() | (ProviderCall.status >= 400))
    rows, cursor = await paginate(in_period(select, ProviderCall, query), ProviderCall, query, int)
    return Page[ProviderCallOut](
        items=[ProviderCallOut.model_validate(row) for row in rows], next_cursor=cursor
    )
