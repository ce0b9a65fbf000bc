"""Companies: the platform operators' list/create, and a company's own name and settings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from guiche.auth.access import access_changed
from guiche.auth.principal import current_principal
from guiche.companies.accounts import create_tenant
from guiche.companies.audit import record_audit
from guiche.contacts.locale import company_settings_changed
from guiche.foundation.errors import NotFound, ValidationFailed, pydantic_details
from guiche.http.endpoint import endpoint
from guiche.http.pagination import Page, PageQuery, paginate
from guiche.models import Tenant
from guiche.runtime.services import services_of
from guiche.tenancy.settings import TenantSettings, merge_settings, read_settings

routes = web.RouteTableDef()

CompanyName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CompanyName
    owner_email: str = Field(min_length=3, max_length=320)
    owner_name: str = Field("", max_length=200)
    owner_password: str | None = Field(
        None, min_length=8, max_length=1024, description="Required when the owner is a new user"
    )


class TenantOwner(BaseModel):
    id: uuid.UUID
    email: str


class TenantCreated(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    owner: TenantOwner


class TenantSummary(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    is_active: bool
    created_at: dt.datetime


class TenantView(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    settings: TenantSettings


class TenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CompanyName | None = None
    settings: dict[str, Any] | None = Field(
        None, description="Keys of TenantSettings to change; null resets a key to its default"
    )


@routes.post("/api/v1/tenants")
@endpoint(
    "platform.tenants.manage",
    body=TenantCreate,
    response=TenantCreated,
    status=201,
    summary="Create a company with its owner (platform admins)",
    tags=("platform",),
)
async def create_company(request: web.Request, *, body: TenantCreate) -> TenantCreated:
    principal = current_principal(request)
    async with Tenant._meta.db.transaction():
        created = await create_tenant(
            body.name, body.owner_email, body.owner_password, owner_name=body.owner_name
        )
        await record_audit(
            dataclasses.replace(principal, tenant_id=created.tenant_id),
            "tenant.created",
            "tenant",
            created.tenant_id,
            {"name": body.name, "owner_email": created.owner_email},
        )
    await access_changed(services_of(request), created.owner_id)  # maybe an existing account
    return TenantCreated(
        id=created.tenant_id,
        name=body.name,
        slug=created.slug,
        owner=TenantOwner(id=created.owner_id, email=created.owner_email),
    )


@routes.get("/api/v1/tenants")
@endpoint(
    "platform.tenants.manage",
    query=PageQuery,
    response=Page[TenantSummary],
    summary="List companies (platform admins)",
    tags=("platform",),
)
async def list_companies(request: web.Request, *, query: PageQuery) -> Page[TenantSummary]:
    select = Tenant.select(Tenant.id, Tenant.name, Tenant.slug, Tenant.is_active, Tenant.created_at)
    rows, next_cursor = await paginate(select, Tenant, query)
    return Page[TenantSummary](
        items=[TenantSummary(**row) for row in rows], next_cursor=next_cursor
    )


async def _tenant_view(tenant_id: uuid.UUID) -> tuple[TenantView, Any]:
    row = (
        await Tenant.select(Tenant.id, Tenant.name, Tenant.slug, Tenant.settings)
        .where(Tenant.id == tenant_id)
        .first()
    )
    if row is None:
        raise NotFound("Company not found")
    view = TenantView(
        id=row["id"], name=row["name"], slug=row["slug"], settings=read_settings(row["settings"])
    )
    return view, row["settings"]


@routes.get("/api/v1/tenant")
@endpoint(
    "tenant.settings.read",
    response=TenantView,
    summary="My company and its settings",
    tags=("tenant",),
)
async def get_company(request: web.Request) -> TenantView:
    view, _ = await _tenant_view(current_principal(request).tenant_id)
    return view


@routes.patch("/api/v1/tenant")
@endpoint(
    "tenant.settings.manage",
    body=TenantPatch,
    response=TenantView,
    summary="Rename my company or change its settings",
    tags=("tenant",),
)
async def update_company(request: web.Request, *, body: TenantPatch) -> TenantView:
    principal = current_principal(request)
    async with Tenant._meta.db.transaction():
        before, stored = await _tenant_view(principal.tenant_id)
        values: dict[Any, Any] = {}
        changes: dict[str, Any] = {}
        if body.name is not None and body.name != before.name:
            values[Tenant.name] = body.name
            changes["name"] = {"from": before.name, "to": body.name}
        if body.settings is not None:
            try:
                after, to_store = merge_settings(stored, body.settings)
            except ValidationError as exc:
                raise ValidationFailed(
                    "Invalid settings", details=_prefixed(pydantic_details(exc.errors()))
                ) from None
            values[Tenant.settings] = to_store
            old, new = before.settings.model_dump(mode="json"), after.model_dump(mode="json")
            changed = {k: {"from": old[k], "to": new[k]} for k in new if old[k] != new[k]}
            if changed:
                changes["settings"] = changed
        if values:
            await Tenant.update(values).where(Tenant.id == principal.tenant_id)
        if changes:
            await record_audit(
                principal, "tenant.updated", "tenant", principal.tenant_id, {"changes": changes}
            )
    if "settings" in changes:  # committed: every process's cached copy is dropped
        await company_settings_changed(services_of(request), principal.tenant_id)
    view, _ = await _tenant_view(principal.tenant_id)
    return view


def _prefixed(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**d, "field": f"settings.{d['field']}" if d["field"] else "settings"} for d in details]
