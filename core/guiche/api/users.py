"""The company's people: a platform user plus their seat (membership) in this company.

Ids in these paths are user ids, the id every other resource (assignee, author,
department member) refers to. Role changes follow one rule: nobody grants or touches a
role above their own, and a company never loses its last active owner.

Adding a person goes through `guiche.companies.invitations` (an existing account is invited, never
attached) and answers alike for every email. The name shown and changed here is the
company's own display name for the person (their seat's); the account's name is theirs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints

from guiche.api.common import Email, changes, like_pattern, path_id
from guiche.auth.access import access_changed, end_sessions
from guiche.auth.principal import Principal, current_principal
from guiche.companies.audit import record_audit
from guiche.companies.invitations import Offer, invite
from guiche.foundation.errors import Conflict, Forbidden, NotFound
from guiche.http.endpoint import AUTHENTICATED, RequestBody, endpoint
from guiche.http.pagination import Page, PageQuery, paginate
from guiche.models import Membership
from guiche.realtime.events import record_events
from guiche.routing.presence import presence_event, set_presence
from guiche.runtime.services import services_of
from guiche.tenancy.rbac import ROLES
from guiche.tenancy.scope import owned

routes = web.RouteTableDef()
TAGS = ("users",)

Role = Literal["owner", "admin", "supervisor", "agent", "viewer"]
Presence = Literal["online", "away", "offline"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
NonEmptyName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
MaxChats = Annotated[int, Field(ge=0, le=100)]


class UserIn(RequestBody):
    email: Email
    name: Name = Field("", description="The company's display name for the person")
    password: Password | None = Field(
        None,
        description="First password, used only if the email has no account yet "
        "(the account is then created at once); otherwise the person is invited",
    )
    role: Role
    max_concurrent_chats: MaxChats = 5


class InvitationSent(BaseModel):
    """The same answer for every email: nothing about any existing account."""

    id: uuid.UUID = Field(description="The invitation's id")
    email: str
    name: str
    role: str
    max_concurrent_chats: int
    created_at: dt.datetime


class UserPatch(RequestBody):
    name: NonEmptyName | None = None
    role: Role | None = None
    max_concurrent_chats: MaxChats | None = None


class StatusIn(RequestBody):
    status: Presence


class UserListQuery(PageQuery):
    role: Role | None = None
    status: Presence | None = None
    is_active: bool | None = None
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    role: str
    is_active: bool
    status: str
    status_changed_at: dt.datetime
    max_concurrent_chats: int
    last_assigned_at: dt.datetime | None
    created_at: dt.datetime


def _select(tenant_id: uuid.UUID) -> Any:
    return owned(
        Membership,
        tenant_id,
        Membership.id,
        Membership.created_at,
        Membership.role,
        Membership.is_active,
        Membership.status,
        Membership.status_changed_at,
        Membership.max_concurrent_chats,
        Membership.last_assigned_at,
        Membership.user.id.as_alias("user_id"),
        Membership.user.email.as_alias("email"),
        Membership.user.name.as_alias("account_name"),
        Membership.display_name,
    )


def _out(row: dict[str, Any]) -> UserOut:
    name = row["display_name"] or row["account_name"]
    return UserOut.model_validate({**row, "id": row["user_id"], "name": name})


async def _seat(tenant_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any]:
    """The membership (with the user's name and email) or 404."""
    row = await _select(tenant_id).where(Membership.user == user_id).first()
    if row is None:
        raise NotFound("user not found")
    return row


def _rank(role: str) -> int:
    """Lower is more powerful (ROLES is ordered from owner down)."""
    return ROLES.index(role)


def _check_grant(principal: Principal, role: str) -> None:
    if _rank(role) < _rank(principal.role):
        raise Forbidden(
            f"A {principal.role} cannot grant the role {role!r}",
            code="role_above_own",
            details={"field": "role", "role": role},
        )


def _check_can_manage(principal: Principal, seat: dict[str, Any]) -> None:
    if _rank(seat["role"]) < _rank(principal.role):
        raise Forbidden(f"A {principal.role} cannot change a {seat['role']}", code="role_above_own")


async def _keep_an_owner(tenant_id: uuid.UUID, leaving: uuid.UUID) -> None:
    """409 unless another active owner remains. Locks the owner seats: concurrent
    demotions are serialised, so two owners cannot remove each other at once."""
    rows = await Membership.raw(
        'SELECT "user" FROM memberships WHERE tenant = {} AND role = {} AND is_active FOR UPDATE',
        tenant_id,
        "owner",
    )
    if not any(row["user"] != leaving for row in rows):
        raise Conflict("The company must keep at least one active owner", code="last_owner")


def _seat_filter(tenant_id: uuid.UUID, user_id: uuid.UUID) -> Any:
    return (Membership.tenant == tenant_id) & (Membership.user == user_id)


@routes.get("/api/v1/users")
@endpoint(
    "users.read",
    query=UserListQuery,
    response=Page[UserOut],
    summary="List the company's people (filters: role, status, is_active, q)",
    tags=TAGS,
)
async def list_users(request: web.Request, *, query: UserListQuery) -> Page[Any]:
    principal = current_principal(request)
    select = _select(principal.tenant_id)
    if query.role:
        select = select.where(Membership.role == query.role)
    if query.status:
        select = select.where(Membership.status == query.status)
    if query.is_active is not None:
        select = select.where(Membership.is_active == query.is_active)
    if query.q:
        pattern = like_pattern(query.q)
        select = select.where(
            Membership.display_name.ilike(pattern)
            | (Membership.display_name.is_null() & Membership.user.name.ilike(pattern))
            | Membership.user.email.ilike(pattern)
        )
    rows, cursor = await paginate(select, Membership, query)
    return Page[UserOut](items=[_out(row) for row in rows], next_cursor=cursor)


@routes.post("/api/v1/users")
@endpoint(
    "users.manage",
    body=UserIn,
    response=InvitationSent,
    status=202,
    summary="Add a person: a new email with a password gets an account and a seat now; "
    "any other email is invited (the person accepts). Same answer either way",
    tags=TAGS,
    errors=(409,),
)
async def create_user(request: web.Request, *, body: UserIn) -> InvitationSent:
    principal = current_principal(request)
    _check_grant(principal, body.role)
    offer = Offer(
        tenant_id=principal.tenant_id,
        email=body.email,
        display_name=body.name,
        role=body.role,
        max_concurrent_chats=body.max_concurrent_chats,
        invited_by=principal.user_id,
    )
    try:
        async with Membership._meta.db.transaction():
            invitation = await invite(offer, body.password)
            await record_audit(
                principal,
                "user.invite",
                "invitation",
                invitation["id"],
                {"email": offer.email, "role": body.role},
            )
    except asyncpg.UniqueViolationError:  # the same new email added twice at once
        raise Conflict("This email was just added", code="already_invited") from None
    return InvitationSent(
        id=invitation["id"],
        email=invitation["email"],
        name=invitation["display_name"],
        role=invitation["role"],
        max_concurrent_chats=invitation["max_concurrent_chats"],
        created_at=invitation["created_at"],
    )


@routes.get("/api/v1/users/{id}")
@endpoint("users.read", response=UserOut, summary="Get a person of the company", tags=TAGS)
async def get_user(request: web.Request) -> UserOut:
    principal = current_principal(request)
    return _out(await _seat(principal.tenant_id, path_id(request, "user")))


@routes.patch("/api/v1/users/{id}")
@endpoint(
    "users.manage",
    body=UserPatch,
    response=UserOut,
    summary="Change a person's display name in this company, role or concurrent-chat cap",
    tags=TAGS,
    errors=(409,),
)
async def update_user(request: web.Request, *, body: UserPatch) -> UserOut:
    principal = current_principal(request)
    user_id = path_id(request, "user")
    values = changes(body)
    async with Membership._meta.db.transaction():
        seat = await _seat(principal.tenant_id, user_id)
        _check_can_manage(principal, seat)
        role = values.get("role")
        if role is not None and role != seat["role"]:
            _check_grant(principal, role)
            if seat["role"] == "owner" and seat["is_active"]:
                await _keep_an_owner(principal.tenant_id, user_id)
        seat_values = {k: v for k, v in values.items() if k in ("role", "max_concurrent_chats")}
        if "name" in values:  # this company's name for them; their account's name is theirs
            seat_values["display_name"] = values["name"]
        if seat_values:
            await Membership.update(seat_values).where(_seat_filter(principal.tenant_id, user_id))
        if values:
            await record_audit(principal, "user.update", "user", user_id, values)
    if role is not None and role != seat["role"]:  # their tokens act with the new role now
        await access_changed(services_of(request), user_id)
    return _out(await _seat(principal.tenant_id, user_id))


@routes.post("/api/v1/users/{id}/deactivate")
@endpoint(
    "users.manage",
    response=UserOut,
    summary="Deactivate a person's seat and revoke their sessions in this company",
    tags=TAGS,
    errors=(409,),
)
async def deactivate_user(request: web.Request) -> UserOut:
    principal = current_principal(request)
    user_id = path_id(request, "user")
    services = services_of(request)
    async with Membership._meta.db.transaction() as transaction:
        seat = await _seat(principal.tenant_id, user_id)
        _check_can_manage(principal, seat)
        if seat["role"] == "owner" and seat["is_active"]:
            await _keep_an_owner(principal.tenant_id, user_id)
        now = dt.datetime.now(dt.UTC)
        await Membership.update(
            {
                Membership.is_active: False,
                Membership.status: "offline",
                Membership.status_changed_at: now,
            }
        ).where(_seat_filter(principal.tenant_id, user_id))
        # Every access token of theirs dies now (the other companies' clients refresh),
        # and this company's refresh tokens are revoked.
        await end_sessions(transaction.connection, user_id, principal.tenant_id)
        await record_audit(principal, "user.deactivate", "user", user_id)
        published = []
        if seat["is_active"] and seat["status"] != "offline":
            published = await record_events(
                transaction.connection,
                [presence_event(principal.tenant_id, user_id, "offline", seat["status"], now)],
            )
    await services.bus.publish(published)
    await access_changed(services, user_id)  # closes their sockets, in every process
    return _out(await _seat(principal.tenant_id, user_id))


@routes.post("/api/v1/users/{id}/activate")
@endpoint("users.manage", response=UserOut, summary="Reactivate a person's seat", tags=TAGS)
async def activate_user(request: web.Request) -> UserOut:
    principal = current_principal(request)
    user_id = path_id(request, "user")
    async with Membership._meta.db.transaction():
        seat = await _seat(principal.tenant_id, user_id)
        _check_can_manage(principal, seat)
        await Membership.update({Membership.is_active: True}).where(
            _seat_filter(principal.tenant_id, user_id)
        )
        await record_audit(principal, "user.activate", "user", user_id)
    await access_changed(services_of(request), user_id)
    return _out(await _seat(principal.tenant_id, user_id))


@routes.put("/api/v1/users/{id}/status")
@endpoint(
    AUTHENTICATED,
    body=StatusIn,
    response=UserOut,
    summary="Set presence (online/away/offline): one's own, or anyone's with users.manage",
    tags=TAGS,
    errors=(403, 409),
)
async def set_status(request: web.Request, *, body: StatusIn) -> UserOut:
    principal = current_principal(request)
    user_id = path_id(request, "user")
    is_self = principal.user_id is not None and principal.user_id == user_id
    if not is_self and not principal.can("users.manage"):
        raise Forbidden(
            "You can only set your own status",
            code="permission_denied",
            details={"permission": "users.manage", "role": principal.role},
        )
    seat = await _seat(principal.tenant_id, user_id)
    if not seat["is_active"]:
        raise Conflict("This person's seat is deactivated", code="inactive_user")

    async def audit() -> None:
        if not is_self:
            await record_audit(principal, "user.status", "user", user_id, {"status": body.status})

    change = await set_presence(
        services_of(request), principal.tenant_id, user_id, body.status, in_transaction=audit
    )
    if change is None:  # deactivated meanwhile
        raise Conflict("This person's seat is deactivated", code="inactive_user")
    return _out(await _seat(principal.tenant_id, user_id))
