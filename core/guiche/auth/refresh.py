"""Refresh tokens: opaque, stored as a SHA-256 digest, rotated on every use.

Tokens of one login form a family. Presenting a token that was already rotated means
two parties hold it (a thief and the user): the whole family is revoked, so whoever
holds the newest token is logged out too and must sign in again.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from guiche.models import RefreshToken


class RefreshRejected(Exception):
    """The token is unknown, expired, revoked or reused (message says which)."""


@dataclass(frozen=True)
class RefreshGrant:
    """Whom a consumed refresh token was issued to, and the family to continue."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID
    family: uuid.UUID


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_refresh_token(
    user_id: uuid.UUID, tenant_id: uuid.UUID, ttl_days: int, family: uuid.UUID | None = None
) -> str:
    """A new token in `family` (a new family when None); only its digest is stored."""
    token = secrets.token_urlsafe(32)
    await RefreshToken.raw(
        'INSERT INTO refresh_tokens ("user", tenant, family, token_hash, expires_at) '
        "VALUES ({}, {}, {}, {}, now() + make_interval(days => {}))",
        user_id,
        tenant_id,
        family or uuid.uuid4(),
        token_digest(token),
        ttl_days,
    )
    return token


async def rotate_refresh_token(token: str, ttl_days: int) -> tuple[RefreshGrant, str]:
    """Consume `token` and issue its successor in the same family.

    The consuming UPDATE only matches an unused row, so of two concurrent rotations
    exactly one wins; the loser is treated as reuse.
    """
    digest = token_digest(token)
    async with RefreshToken._meta.db.transaction():
        rows = await RefreshToken.raw(
            "UPDATE refresh_tokens SET used_at = now() "
            "WHERE token_hash = {} AND used_at IS NULL AND revoked_at IS NULL "
            "AND expires_at > now() "
            'RETURNING "user", tenant, family',
            digest,
        )
        if rows:
            row = rows[0]
            grant = RefreshGrant(row["user"], row["tenant"], row["family"])
            successor = await issue_refresh_token(
                grant.user_id, grant.tenant_id, ttl_days, grant.family
            )
            return grant, successor
    rows = await RefreshToken.raw(
        "SELECT family, used_at, revoked_at, expires_at <= now() AS expired "
        "FROM refresh_tokens WHERE token_hash = {}",
        digest,
    )
    if not rows:
        raise RefreshRejected("Invalid refresh token")
    row = rows[0]
    if row["revoked_at"] is not None:
        raise RefreshRejected("Refresh token revoked")
    if row["used_at"] is not None:
        await revoke_family(row["family"])
        raise RefreshRejected("Refresh token reused: the session was revoked")
    raise RefreshRejected("Refresh token expired")


async def revoke_family(family: uuid.UUID) -> None:
    await RefreshToken.raw(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family = {} AND revoked_at IS NULL",
        family,
    )


async def revoke_family_of(token: str) -> bool:
    """Log out: revoke the family `token` belongs to. False when the token is unknown."""
    rows = await RefreshToken.raw(
        "SELECT family FROM refresh_tokens WHERE token_hash = {}", token_digest(token)
    )
    if not rows:
        return False
    await revoke_family(rows[0]["family"])
    return True
