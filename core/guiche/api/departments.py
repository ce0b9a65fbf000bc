"""Departments (queues) and which of the company's people serve each one.

Deleting a department only deactivates it: conversations keep pointing at it, and its
name stays taken (reactivate it with PATCH `is_active`).
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
from guiche.foundation.errors import Conflict, NotFound
from guiche.http.endpoint import RequestBody, endpoint
from guiche.http.pagination import Page, PageQuery, paginate
from guiche.models import Department, DepartmentMember, Membership
from guiche.tenancy.scope import get_owned, owned

routes = web.RouteTableDef()
TAGS = ("departments",)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Description = Annotated[str, StringConstraints(max_length=2000)]


class DepartmentIn(RequestBody):
    name: Name
    description: Description = ""


class DepartmentPatch(RequestBody):
    name: Name | None = None
    description: Description | None = None
    is_active: bool | None = None


class DepartmentListQuery(PageQuery):
    q: str | None = None
    include_inactive: bool = False


class DepartmentOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    is_active: bool
    created_at: dt.datetime


class DepartmentMemberOut(BaseModel):
    user_id: uuid.UUID
    name: str
    email: str
    role: str | None
    status: str | None
    is_active: bool
    added_at: dt.datetime


async def _name_conflict(tenant_id: uuid.UUID, name: str) -> Conflict:
    rows = await Department.raw(
        "SELECT id FROM departments WHERE tenant = {} AND lower(name) = lower({})", tenant_id, name
    )
    existing = str(rows[0]["id"]) if rows else None
    return Conflict(
        f"A department named {name!r} already exists",
        code="duplicate_name",
        details={"field": "name", "existing_id": existing},
    )


@routes.get("/api/v1/departments")
@endpoint(
    "departments.read",
    query=DepartmentListQuery,
    response=Page[DepartmentOut],
    summary="List departments",
    tags=TAGS,
)
async def list_departments(request: web.Request, *, query: DepartmentListQuery) -> Page[Any]:
    principal = current_principal(request)
    select = owned(Department, principal.tenant_id)
    if not query.include_inactive:
        select = select.where(Department.is_active == True)  # noqa: E712
    if query.q:
        select = select.where(Department.name.ilike(like_pattern(query.q)))
    rows, cursor = await paginate(select, Department, query)
    return Page[DepartmentOut](
        items=[DepartmentOut.model_validate(row) for row in rows], next_cursor=cursor
    )


@routes.post("/api/v1/departments")
@endpoint(
    "departments.manage",
    body=DepartmentIn,
    response=DepartmentOut,
    status=201,
    summary="Create a department",
    tags=TAGS,
    errors=(409,),
)
async def create_department(request: web.Request, *, body: DepartmentIn) -> DepartmentOut:
    principal = current_principal(request)
    try:
        async with Department._meta.db.transaction():
            rows = await Department.insert(
                Department(tenant=principal.tenant_id, name=body.name, description=body.description)
            ).returning(*Department.all_columns())
            row = rows[0]
            await record_audit(
                principal, "department.create", "department", row["id"], {"name": body.name}
            )
    except asyncpg.UniqueViolationError:
        raise await _name_conflict(principal.tenant_id, body.name) from None
    return DepartmentOut.model_validate(row)


@routes.get("/api/v1/departments/{id}")
@endpoint("departments.read", response=DepartmentOut, summary="Get a department", tags=TAGS)
async def get_department(request: web.Request) -> DepartmentOut:
    principal = current_principal(request)
    row = await get_owned(Department, principal.tenant_id, path_id(request, "department"))
    return DepartmentOut.model_validate(row)


@routes.patch("/api/v1/departments/{id}")
@endpoint(
    "departments.manage",
    body=DepartmentPatch,
    response=DepartmentOut,
    summary="Rename, describe or (re)activate a department",
    tags=TAGS,
    errors=(409,),
)
async def update_department(request: web.Request, *, body: DepartmentPatch) -> DepartmentOut:
    principal = current_principal(request)
    department_id = path_id(request, "department")
    await get_owned(Department, principal.tenant_id, department_id, what="department")
    values = changes(body)
    if values:
        try:
            async with Department._meta.db.transaction():
                await Department.update(values).where(
                    (Department.tenant == principal.tenant_id) & (Department.id == department_id)
                )
                await record_audit(
                    principal, "department.update", "department", department_id, values
                )
        except asyncpg.UniqueViolationError:
            raise await _name_conflict(principal.tenant_id, values["name"]) from None
    row = await get_owned(Department, principal.tenant_id, department_id, what="department")
    return DepartmentOut.model_validate(row)


@routes.delete("/api/v1/departments/{id}")
@endpoint("departments.manage", status=204, summary="Deactivate a department", tags=TAGS)
async def delete_department(request: web.Request) -> None:
    principal = current_principal(request)
    department_id = path_id(request, "department")
    await get_owned(Department, principal.tenant_id, department_id, what="department")
    async with Department._meta.db.transaction():
        await Department.update({Department.is_active: False}).where(
            (Department.tenant == principal.tenant_id) & (Department.id == department_id)
        )
        await record_audit(principal, "department.delete", "department", department_id)


# --- members -----------------------------------------------------------------------------


async def _member_rows(tenant_id: uuid.UUID, rows: list[dict[str, Any]]) -> list[Any]:
    """Attach each person's role and presence in this company (memberships)."""
    user_ids = [row["user_id"] for row in rows]
    seats: dict[uuid.UUID, dict[str, Any]] = {}
    if user_ids:
        found = await owned(
            Membership,
            tenant_id,
            Membership.user,
            Membership.role,
            Membership.status,
            Membership.is_active,
            Membership.display_name,
        ).where(Membership.user.is_in(user_ids))
        seats = {seat["user"]: seat for seat in found}
    items = []
    for row in rows:
        seat = seats.get(row["user_id"], {})
        items.append(
            DepartmentMemberOut(
                user_id=row["user_id"],
                name=seat.get("display_name") or row["name"],
                email=row["email"],
                role=seat.get("role"),
                status=seat.get("status"),
                is_active=bool(seat.get("is_active", False)),
                added_at=row["created_at"],
            )
        )
    return items


async def _active_department(tenant_id: uuid.UUID, department_id: uuid.UUID) -> None:
    """404 unless the department exists and is active: a deleted (deactivated) department
    keeps its row, so it can be reactivated, but has no members to list or add."""
    row = await get_owned(Department, tenant_id, department_id, Department.is_active)
    if not row["is_active"]:
        raise NotFound("department not found", code="department_inactive")


def _member_select(tenant_id: uuid.UUID, department_id: uuid.UUID) -> Any:
    return owned(
        DepartmentMember,
        tenant_id,
        DepartmentMember.id,
        DepartmentMember.created_at,
        DepartmentMember.user.id.as_alias("user_id"),
        DepartmentMember.user.name.as_alias("name"),
        DepartmentMember.user.email.as_alias("email"),
    ).where(DepartmentMember.department == department_id)


@routes.get("/api/v1/departments/{id}/members")
@endpoint(
    "departments.read",
    query=PageQuery,
    response=Page[DepartmentMemberOut],
    summary="List a department's members",
    tags=TAGS,
)
async def list_members(request: web.Request, *, query: PageQuery) -> Page[Any]:
    principal = current_principal(request)
    department_id = path_id(request, "department")
    await _active_department(principal.tenant_id, department_id)
    rows, cursor = await paginate(
        _member_select(principal.tenant_id, department_id), DepartmentMember, query
    )
    items = await _member_rows(principal.tenant_id, rows)
    return Page[DepartmentMemberOut](items=items, next_cursor=cursor)


@routes.put("/api/v1/departments/{id}/members/{user_id}")
@endpoint(
    "departments.manage",
    response=DepartmentMemberOut,
    summary="Add a person of the company to a department (idempotent)",
    tags=TAGS,
)
async def add_member(request: web.Request) -> DepartmentMemberOut:
    principal = current_principal(request)
    department_id = path_id(request, "department")
    user_id = path_id(request, "user", key="user_id")
    await _active_department(principal.tenant_id, department_id)
    is_member = await Membership.exists().where(
        (Membership.tenant == principal.tenant_id) & (Membership.user == user_id)
    )
    if not is_member:
        raise NotFound("user not found")
    async with DepartmentMember._meta.db.transaction():
        inserted = await DepartmentMember.raw(
            'INSERT INTO department_members (tenant, department, "user") VALUES ({}, {}, {})'
            ' ON CONFLICT (department, "user") DO NOTHING RETURNING id',
            principal.tenant_id,
            department_id,
            user_id,
        )
        if inserted:
            await record_audit(
                principal,
                "department.member_add",
                "department",
                department_id,
                {"user_id": str(user_id)},
            )
    rows = await _member_select(principal.tenant_id, department_id).where(
        DepartmentMember.user == user_id
    )
    return (await _member_rows(principal.tenant_id, rows))[0]


@routes.delete("/api/v1/departments/{id}/members/{user_id}")
@endpoint(
    "departments.manage",
    status=204,
    summary="Remove a person from a department (idempotent)",
    tags=TAGS,
)
async def remove_member(request: web.Request) -> None:
    principal = current_principal(request)
    department_id = path_id(request, "department")
    user_id = path_id(request, "user", key="user_id")
    await get_owned(Department, principal.tenant_id, department_id, what="department")
    async with DepartmentMember._meta.db.transaction():
        removed = (
            await DepartmentMember.delete()
            .where(
                (DepartmentMember.tenant == principal.tenant_id)
                & (DepartmentMember.department == department_id)
                & (DepartmentMember.user == user_id)
            )
            .returning(DepartmentMember.id)
        )
        if removed:
            await record_audit(
                principal,
                "department.member_remove",
                "department",
                department_id,
                {"user_id": str(user_id)},
            )
