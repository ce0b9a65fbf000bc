"""Invitations over HTTP, from the three sides that touch one.

- The company (`/api/v1/invitations`): lists what it sent and withdraws pending ones.
  It never sees the invited account's id or name (see `guiche.companies.invitations`).
- The person (`/api/v1/auth/invitations`): lists the invitations addressed to their
  email and accepts or declines them; accepting gives a seat in that company.
- Platform admins (`/api/v1/platform/invitations`): find and accept for a person.

Sending one is `POST /api/v1/users`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from guiche.api.common import Email, path_id
from guiche.auth.access import access_changed
from guiche.auth.principal import Principal, current_principal, signed_in_user
from guiche.companies.audit import record_audit
from guiche.companies.invitations import account_for, respond, revoke
from guiche.foundation.errors import NotFound
from guiche.http.endpoint import AUTHENTICATED, endpoint
from guiche.http.pagination import Page, PageQuery, paginate
from guiche.models import Invitation, User
from guiche.runtime.services import services_of
from guiche.tenancy.scope import owned

routes = web.RouteTableDef()

Status = Literal["pending", "accepted", "declined", "revoked"]


class InvitationQuery(PageQuery):
    status: Status | None = None


class PlatformInvitationQuery(InvitationQuery):
    email: Email | None = None


class InvitationOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    role: str
    max_concurrent_chats: int
    status: str
    created_at: dt.datetime
    responded_at: dt.datetime | None


class InvitingCompany(BaseModel):
    id: uuid.UUID
    name: str
    slug: str


class MyInvitation(BaseModel):
    id: uuid.UUID
    company: InvitingCompany
    role: str
    name: str
    status: str
    created_at: dt.datetime


class MyInvitations(BaseModel):
    items: list[MyInvitation]


_COLUMNS = (
    Invitation.id,
    Invitation.email,
    Invitation.display_name.as_alias("name"),
    Invitation.role,
    Invitation.max_concurrent_chats,
    Invitation.status,
    Invitation.created_at,
    Invitation.responded_at,
)


async def _page(select: Any, query: InvitationQuery) -> Page[InvitationOut]:
    if query.status:
        select = select.where(Invitation.status == query.status)
    rows, cursor = await paginate(select, Invitation, query)
    return Page[InvitationOut](items=[InvitationOut(**row) for row in rows], next_cursor=cursor)


# --- the company ----------------------------------------------------------------------------


@routes.get("/api/v1/invitations")
@endpoint(
    "users.read",
    query=InvitationQuery,
    response=Page[InvitationOut],
    summary="The invitations this company sent",
    tags=("users",),
)
async def list_company_invitations(
    request: web.Request, *, query: InvitationQuery
) -> Page[InvitationOut]:
    principal = current_principal(request)
    return await _page(owned(Invitation, principal.tenant_id, *_COLUMNS), query)


@routes.delete("/api/v1/invitations/{id}")
@endpoint("users.manage", status=204, summary="Withdraw a pending invitation", tags=("users",))
async def revoke_invitation(request: web.Request) -> None:
    principal = current_principal(request)
    invitation_id = path_id(request, "invitation")
    async with Invitation._meta.db.transaction():
        await revoke(principal.tenant_id, invitation_id)
        await record_audit(principal, "invitation.revoke", "invitation", invitation_id)


# --- the person -----------------------------------------------------------------------------


async def _my_email(user_id: uuid.UUID) -> str:
    row = await User.select(User.email).where(User.id == user_id).first()
    if row is None:
        raise NotFound("user not found")
    return str(row["email"])


async def _mine(email: str, invitation_id: uuid.UUID | None = None) -> list[MyInvitation]:
    sql = (
        "SELECT i.id, i.role, i.display_name AS name, i.status, i.created_at, "
        "t.id AS company_id, t.name AS company_name, t.slug AS company_slug "
        "FROM invitations i JOIN tenants t ON t.id = i.tenant "
        "WHERE lower(i.email) = {} AND t.is_active"
    )
    args: list[Any] = [email.strip().lower()]
    if invitation_id is None:
        sql += " AND i.status = 'pending' ORDER BY i.created_at, i.id"
    else:
        sql += " AND i.id = {}"
        args.append(invitation_id)
    rows = await Invitation.raw(sql, *args)
    return [
        MyInvitation(
            id=row["id"],
            company=InvitingCompany(
                id=row["company_id"], name=row["company_name"], slug=row["company_slug"]
            ),
            role=row["role"],
            name=row["name"],
            status=row["status"],
            created_at=row["created_at"],
        )
        for row in rows
    ]


@routes.get("/api/v1/auth/invitations")
@endpoint(
    AUTHENTICATED,
    response=MyInvitations,
    summary="My pending invitations from companies",
    tags=("auth",),
)
async def my_invitations(request: web.Request) -> MyInvitations:
    _, user_id = signed_in_user(request)
    return MyInvitations(items=await _mine(await _my_email(user_id)))


async def _answer(
    request: web.Request,
    principal: Principal,
    invitation_id: uuid.UUID,
    user_id: uuid.UUID,
    email: str | None,
    *,
    accept: bool,
) -> dict[str, Any]:
    """Accept or decline, with the audit row in the inviting company's trail."""
    async with Invitation._meta.db.transaction():
        row = await respond(invitation_id, user_id, email, accept=accept)
        await record_audit(
            dataclasses.replace(principal, tenant_id=row["tenant"]),
            "invitation.accept" if accept else "invitation.decline",
            "invitation",
            invitation_id,
            {"role": row["role"], "on_behalf": email is None},
        )
    if accept:  # a new seat: their tokens for that company must be honoured at once
        await access_changed(services_of(request), user_id)
    return row


async def _answer_as_person(request: web.Request, *, accept: bool) -> MyInvitation:
    principal, user_id = signed_in_user(request)
    invitation_id = path_id(request, "invitation")
    email = await _my_email(user_id)
    await _answer(request, principal, invitation_id, user_id, email, accept=accept)
    (answered,) = await _mine(email, invitation_id)
    return answered


@routes.post("/api/v1/auth/invitations/{id}/accept")
@endpoint(
    AUTHENTICATED,
    response=MyInvitation,
    summary="Accept an invitation: a seat in that company (then `auth/switch` to it)",
    tags=("auth",),
)
async def accept_invitation(request: web.Request) -> MyInvitation:
    return await _answer_as_person(request, accept=True)


@routes.post("/api/v1/auth/invitations/{id}/decline")
@endpoint(AUTHENTICATED, response=MyInvitation, summary="Decline an invitation", tags=("auth",))
async def decline_invitation(request: web.Request) -> MyInvitation:
    return await _answer_as_person(request, accept=False)


# --- platform admins ------------------------------------------------------------------------


@routes.get("/api/v1/platform/invitations")
@endpoint(
    "platform.tenants.manage",
    query=PlatformInvitationQuery,
    response=Page[InvitationOut],
    summary="Invitations across companies, by email (platform admins)",
    tags=("platform",),
)
async def list_all_invitations(
    request: web.Request, *, query: PlatformInvitationQuery
) -> Page[InvitationOut]:
    select = Invitation.select(*_COLUMNS)
    if query.email:
        select = select.where(Invitation.email == query.email)
    return await _page(select, query)


@routes.post("/api/v1/platform/invitations/{id}/accept")
@endpoint(
    "platform.tenants.manage",
    response=InvitationOut,
    summary="Accept an invitation for the person with its email (platform admins)",
    tags=("platform",),
)
async def accept_for_person(request: web.Request) -> InvitationOut:
    principal = current_principal(request)
    invitation_id = path_id(request, "invitation")
    user_id = await account_for(invitation_id)
    await _answer(request, principal, invitation_id, user_id, None, accept=True)
    row = await Invitation.select(*_COLUMNS).where(Invitation.id == invitation_id).first()
    return InvitationOut(**row)
