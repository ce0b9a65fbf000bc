"""Tabulations: the reasons an agent picks when closing a conversation.

Closed conversations keep their tabulation for reports, so deleting one only
deactivates it (no longer offered when closing) and its name stays taken.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, StringConstraints

from guiche.api.common import changes, like_pattern, path_id
from guiche.auth.principal import current_principal
from guiche.companies.audit import record_audit
from guiche.foundation.errors import Conflict
from guiche.http.endpoint import RequestBody, endpoint
from guiche.http.pagination import Page, PageQuery, paginate
from guiche.models import Tabulation
from guiche.tenancy.scope import get_owned, owned

routes = web.RouteTableDef()
TAGS = ("tabulations",)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Description = Annotated[str, StringConstraints(max_length=2000)]


class TabulationIn(RequestBody):
    name: Name
    description: Description = ""


class TabulationPatch(RequestBody):
    name: Name | None = None
    description: Description | None = None
    is_active: bool | None = None


class TabulationListQuery(PageQuery):
    q: str | None = None
    include_inactive: bool = False


class TabulationOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    is_active: bool
    created_at: dt.datetime


async def _name_conflict(tenant_id: uuid.UUID, name: str) -> Conflict:
    rows = await Tabulation.raw(
        "SELECT id FROM tabulations WHERE tenant = {} AND lower(name) = lower({})", tenant_id, name
    )
    return Conflict(
        f"A tabulation named {name!r} already exists",
        code="duplicate_name",
        details={"field": "name", "existing_id": str(rows[0]["id"]) if rows else None},
    )


@routes.get("/api/v1/tabulations")
@endpoint(
    "tabulations.read",
    query=TabulationListQuery,
    response=Page[TabulationOut],
    summary="List tabulations (closing reasons)",
    tags=TAGS,
)
async def list_tabulations(request: web.Request, *, query: TabulationListQuery) -> Page[Any]:
    principal = current_principal(request)
    select = owned(Tabulation, principal.tenant_id)
    if not query.include_inactive:
        select = select.where(Tabulation.is_active == True)  # noqa: E712
    if query.q:
        select = select.where(Tabulation.name.ilike(like_pattern(query.q)))
    rows, cursor = await paginate(select, Tabulation, query)
    return Page[TabulationOut](
        items=[TabulationOut.model_validate(row) for row in rows], next_cursor=cursor
    )


@routes.post("/api/v1/tabulations")
@endpoint(
    "tabulations.manage",
    body=TabulationIn,
    response=TabulationOut,
    status=201,
    summary="Create a tabulation",
    tags=TAGS,
    errors=(409,),
)
async def create_tabulation(request: web.Request, *, body: TabulationIn) -> TabulationOut:
    principal = current_principal(request)
    try:
        async with Tabulation._meta.db.transaction():
            rows = await Tabulation.insert(
                Tabulation(tenant=principal.tenant_id, name=body.name, description=body.description)
            ).returning(*Tabulation.all_columns())
            await record_audit(
                principal, "tabulation.create", "tabulation", rows[0]["id"], {"name": body.name}
            )
    except asyncpg.UniqueViolationError:
        raise await _name_conflict(principal.tenant_id, body.name) from None
    return TabulationOut.model_validate(rows[0])


@routes.get("/api/v1/tabulations/{id}")
@endpoint("tabulations.read", response=TabulationOut, summary="Get a tabulation", tags=TAGS)
async def get_tabulation(request: web.Request) -> TabulationOut:
    principal = current_principal(request)
    row = await get_owned(
        Tabulation, principal.tenant_id, path_id(request, "tabulation"), what="tabulation"
    )
    return TabulationOut.model_validate(row)


@routes.patch("/api/v1/tabulations/{id}")
@endpoint(
    "tabulations.manage",
    body=TabulationPatch,
    response=TabulationOut,
    summary="Rename, describe or (re)activate a tabulation",
    tags=TAGS,
    errors=(409,),
)
async def update_tabulation(request: web.Request, *, body: TabulationPatch) -> TabulationOut:
    principal = current_principal(request)
    tabulation_id = path_id(request, "tabulation")
    await get_owned(Tabulation, principal.tenant_id, tabulation_id, what="tabulation")
    values = changes(body)
    if values:
        try:
            async with Tabulation._meta.db.transaction():
                await Tabulation.update(values).where(
                    (Tabulation.tenant == principal.tenant_id) & (Tabulation.id == tabulation_id)
                )
                await record_audit(
                    principal, "tabulation.update", "tabulation", tabulation_id, values
                )
        except asyncpg.UniqueViolationError:
            raise await _name_conflict(principal.tenant_id, values["name"]) from None
    row = await get_owned(Tabulation, principal.tenant_id, tabulation_id, what="tabulation")
    return TabulationOut.model_validate(row)


@routes.delete("/api/v1/tabulations/{id}")
@endpoint("tabulations.manage", status=204, summary="Deactivate a tabulation", tags=TAGS)
async def delete_tabulation(request: web.Request) -> None:
    principal = current_principal(request)
    tabulation_id = path_id(request, "tabulation")
    await get_owned(Tabulation, principal.tenant_id, tabulation_id, what="tabulation")
    async with Tabulation._meta.db.transaction():
        await Tabulation.update({Tabulation.is_active: False}).where(
            (Tabulation.tenant == principal.tenant_id) & (Tabulation.id == tabulation_id)
        )
        await record_audit(principal, "tabulation.delete", "tabulation", tabulation_id)
