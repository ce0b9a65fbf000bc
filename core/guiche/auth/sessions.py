"""Signing in: check a password, pick the company to act in, and issue the token pair.

Every way a login can fail answers the same 401, so the response never tells an
attacker whether an email exists, is disabled, or simply has no company.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from guiche.auth.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from guiche.auth.refresh import issue_refresh_token
from guiche.auth.tokens import issue_access_token
from guiche.foundation.config import Settings
from guiche.foundation.errors import Unauthorized
from guiche.models import Membership, User

BAD_CREDENTIALS = "Invalid email or password"


def bad_credentials() -> Unauthorized:
    return Unauthorized(BAD_CREDENTIALS, code="invalid_credentials")


@dataclass(frozen=True)
class SessionUser:
    id: uuid.UUID
    email: str
    name: str
    is_platform_admin: bool
    token_version: int = 0


class TenantRef(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    role: str


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int
    tenant: TenantRef


async def check_password(email: str, password: str) -> SessionUser | None:
    """The active user with this email and password, or None.

    An unknown email still pays for one argon2 verify, so timing does not reveal it.
    Hashes made with older parameters are upgraded while we hold the plain password.
    """
    rows = await User.raw(
        "SELECT id, email, name, password_hash, is_active, is_platform_admin, token_version "
        "FROM users WHERE lower(email) = {}",
        email.strip().lower(),
    )
    if not rows:
        await asyncio.to_thread(verify_password, dummy_hash(), password)
        return None
    row = rows[0]
    stored = row["password_hash"] or dummy_hash()
    ok = await asyncio.to_thread(verify_password, stored, password)
    if not ok or not row["password_hash"] or not row["is_active"]:
        return None
    if needs_rehash(stored):
        new_hash = await asyncio.to_thread(hash_password, password)
        await User.update({User.password_hash: new_hash}).where(User.id == row["id"])
    return SessionUser(
        row["id"], row["email"], row["name"], row["is_platform_admin"], row["token_version"]
    )


async def load_user(user_id: uuid.UUID) -> SessionUser | None:
    """An active user by id (refresh and switch re-check that the account still works)."""
    row = (
        await User.select(
            User.id, User.email, User.name, User.is_platform_admin, User.token_version
        )
        .where((User.id == user_id) & (User.is_active == True))  # noqa: E712
        .first()
    )
    if row is None:
        return None
    return SessionUser(
        row["id"], row["email"], row["name"], row["is_platform_admin"], row["token_version"]
    )


async def memberships(user_id: uuid.UUID) -> list[TenantRef]:
    """The user's active seats in active companies, oldest first."""
    rows = await Membership.raw(
        "SELECT t.id, t.name, t.slug, m.role FROM memberships m "
        "JOIN tenants t ON t.id = m.tenant "
        'WHERE m."user" = {} AND m.is_active AND t.is_active '
        "ORDER BY m.created_at, m.id",
        user_id,
    )
    return [TenantRef(**row) for row in rows]


async def membership(user_id: uuid.UUID, tenant_id: uuid.UUID | None) -> TenantRef | None:
    """The seat to act in: in `tenant_id` when given, else the oldest."""
    seats = await memberships(user_id)
    if tenant_id is None:
        return seats[0] if seats else None
    return next((seat for seat in seats if seat.id == tenant_id), None)


async def issue_tokens(
    settings: Settings,
    user: SessionUser,
    seat: TenantRef,
    *,
    refresh_token: str | None = None,
) -> TokenPair:
    """An access token for `seat`, with `refresh_token` or a new refresh family."""
    access = issue_access_token(
        settings,
        user_id=user.id,
        tenant_id=seat.id,
        role=seat.role,
        platform_admin=user.is_platform_admin,
        token_version=user.token_version,
    )
    if refresh_token is None:
        refresh_token = await issue_refresh_token(user.id, seat.id, settings.refresh_token_ttl_days)
    return TokenPair(
        access_token=access,
        refresh_token=refresh_token,
        expires_in=settings.access_token_ttl_seconds,
        tenant=seat,
    )


def user_payload(user: SessionUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "is_platform_admin": user.is_platform_admin,
    }
