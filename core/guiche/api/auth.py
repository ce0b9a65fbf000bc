"""HTTP face of authentication: login, refresh, logout (here or everywhere), password
change, who-am-I, companies, switch."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from guiche.auth.access import access_changed, end_sessions, forget_locally
from guiche.auth.passwords import hash_password
from guiche.auth.principal import Principal, current_principal, signed_in_user
from guiche.auth.refresh import RefreshRejected, revoke_family, revoke_family_of
from guiche.auth.refresh import rotate_refresh_token as rotate
from guiche.auth.sessions import (
    TenantRef,
    TokenPair,
    bad_credentials,
    check_password,
    issue_tokens,
    load_user,
    membership,
    memberships,
)
from guiche.auth.throttle import login_throttle
from guiche.foundation.errors import Forbidden, NotFound, Unauthorized
from guiche.http.endpoint import AUTHENTICATED, PUBLIC, endpoint
from guiche.models import Tenant, User
from guiche.runtime.services import services_of
from guiche.web.ratelimit import client_bucket

routes = web.RouteTableDef()
TAGS = ("auth",)


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    tenant_id: uuid.UUID | None = Field(None, description="Company to act in; oldest if omitted")


class RefreshBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=200)


class SwitchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: uuid.UUID


class MePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: Annotated[str, StringConstraints(min_length=8, max_length=256)]


class MeUser(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    is_platform_admin: bool


class MeTenant(BaseModel):
    id: uuid.UUID
    name: str
    slug: str


class Me(BaseModel):
    kind: str
    user: MeUser | None
    tenant: MeTenant
    role: str
    permissions: list[str]


class Company(TenantRef):
    active: bool


class Companies(BaseModel):
    items: list[Company]


@routes.post("/api/v1/auth/login")
@endpoint(PUBLIC, body=LoginBody, response=TokenPair, summary="Sign in", tags=TAGS, errors=(401,))
async def login(request: web.Request, *, body: LoginBody) -> TokenPair:
    services = services_of(request)
    throttle = login_throttle(services)
    client = client_bucket(request)  # behind trusted proxies: the real client, not the proxy
    await throttle.before_attempt(client, body.email)
    user = await check_password(body.email, body.password)
    seat = await membership(user.id, body.tenant_id) if user else None
    if user is None or seat is None:
        raise bad_credentials()  # the reserved attempt stays counted: a failure
    await throttle.succeeded(client, body.email)
    forget_locally(services, user.id)
    return await issue_tokens(services.settings, user, seat)


@routes.post("/api/v1/auth/refresh")
@endpoint(
    PUBLIC, body=RefreshBody, response=TokenPair, summary="Rotate tokens", tags=TAGS, errors=(401,)
)
async def refresh(request: web.Request, *, body: RefreshBody) -> TokenPair:
    settings = services_of(request).settings
    try:
        grant, successor = await rotate(body.refresh_token, settings.refresh_token_ttl_days)
    except RefreshRejected as exc:
        raise Unauthorized(str(exc), code="invalid_refresh_token") from None
    user = await load_user(grant.user_id)
    seat = await membership(grant.user_id, grant.tenant_id) if user else None
    if user is None or seat is None:
        await revoke_family(grant.family)
        raise Unauthorized("The session is no longer valid", code="invalid_refresh_token")
    return await issue_tokens(settings, user, seat, refresh_token=successor)


@routes.post("/api/v1/auth/logout")
@endpoint(PUBLIC, body=RefreshBody, status=204, summary="Revoke a session", tags=TAGS)
async def logout(request: web.Request, *, body: RefreshBody) -> None:
    await revoke_family_of(body.refresh_token)


@routes.post("/api/v1/auth/logout-all")
@endpoint(
    AUTHENTICATED,
    status=204,
    summary="Log out everywhere: every access and refresh token of mine stops working now, "
    "and my open WebSockets close",
    tags=TAGS,
    errors=(403,),
)
async def logout_everywhere(request: web.Request) -> None:
    _, user_id = signed_in_user(request)
    async with User._meta.db.transaction() as transaction:
        await end_sessions(transaction.connection, user_id)
    await access_changed(services_of(request), user_id)


@routes.post("/api/v1/auth/password")
@endpoint(
    AUTHENTICATED,
    body=PasswordChange,
    response=TokenPair,
    summary="Change my password: every session of mine ends, this one continues with the "
    "new token pair answered",
    tags=TAGS,
    errors=(403, 429),
)
async def change_password(request: web.Request, *, body: PasswordChange) -> TokenPair:
    services = services_of(request)
    principal, user_id = signed_in_user(request)
    account = await User.select(User.email).where(User.id == user_id).first()
    email = account["email"] if account else ""
    throttle = login_throttle(services)  # guessing the current password is a login attempt
    client = client_bucket(request)
    await throttle.before_attempt(client, email)
    user = await check_password(email, body.current_password)
    if user is None or user.id != user_id:
        raise Forbidden("The current password is wrong", code="wrong_password")
    await throttle.succeeded(client, email)
    new_hash = await asyncio.to_thread(hash_password, body.new_password)
    async with User._meta.db.transaction() as transaction:
        await User.update({User.password_hash: new_hash}).where(User.id == user_id)
        version = await end_sessions(transaction.connection, user_id)
    await access_changed(services, user_id)
    seat = await membership(user_id, principal.tenant_id)
    if seat is None:  # the seat went away meanwhile: sign in again
        raise Unauthorized("No active seat in this company any more", code="invalid_token")
    return await issue_tokens(
        services.settings, dataclasses.replace(user, token_version=version), seat
    )


async def _me(principal: Principal) -> Me:
    tenant = (
        await Tenant.select(Tenant.id, Tenant.name, Tenant.slug)
        .where(Tenant.id == principal.tenant_id)
        .first()
    )
    if tenant is None:
        raise NotFound("Company not found")
    user: dict[str, Any] | None = None
    if principal.user_id is not None:
        user = (
            await User.select(User.id, User.email, User.name, User.is_platform_admin)
            .where(User.id == principal.user_id)
            .first()
        )
    return Me(
        kind=principal.kind,
        user=MeUser(**user) if user else None,
        tenant=MeTenant(**tenant),
        role=principal.role,
        permissions=sorted(principal.permissions),
    )


@routes.get("/api/v1/auth/me")
@endpoint(AUTHENTICATED, response=Me, summary="Who am I", tags=TAGS, errors=(404,))
async def me(request: web.Request) -> Me:
    return await _me(current_principal(request))


@routes.patch("/api/v1/auth/me")
@endpoint(
    AUTHENTICATED,
    body=MePatch,
    response=Me,
    summary="Change my own name (each company may still show its own display name for me)",
    tags=TAGS,
)
async def update_me(request: web.Request, *, body: MePatch) -> Me:
    principal, user_id = signed_in_user(request)
    await User.update({User.name: body.name}).where(User.id == user_id)
    return await _me(principal)


@routes.get("/api/v1/auth/companies")
@endpoint(AUTHENTICATED, response=Companies, summary="My companies", tags=TAGS, errors=(403,))
async def companies(request: web.Request) -> Companies:
    principal, user_id = signed_in_user(request)
    seats = await memberships(user_id)
    return Companies(
        items=[
            Company(**seat.model_dump(), active=seat.id == principal.tenant_id) for seat in seats
        ]
    )


@routes.post("/api/v1/auth/switch")
@endpoint(
    AUTHENTICATED,
    body=SwitchBody,
    response=TokenPair,
    summary="New token pair for another of my companies",
    tags=TAGS,
    errors=(403, 404),
)
async def switch(request: web.Request, *, body: SwitchBody) -> TokenPair:
    _, user_id = signed_in_user(request)
    user = await load_user(user_id)
    if user is None:
        raise Unauthorized("The account is disabled", code="invalid_token")
    seat = await membership(user.id, body.tenant_id)
    if seat is None:
        raise NotFound("Company not found among your memberships", code="not_a_member")
    return await issue_tokens(services_of(request).settings, user, seat)
