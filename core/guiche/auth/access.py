"""Whether an access token still stands: its user's session version, active seat and role.

Access tokens are signed for minutes; without this check a deactivated person, a
changed password or a "log out everywhere" would leave tokens working until they expire.
Every request (and every WebSocket, at its handshake and whenever its user changes)
compares the token with the user's current `UserAccess`:

- `users.token_version` (the token's `ver` claim): bumped by a password change, "log out
  everywhere" and a seat's deactivation, so every token issued before dies at once;
- the seat: the token's company must still be an active seat of an active company;
- the role and the platform flag are taken from the database, not from the token, so a
  demotion takes effect on the next request.

`UserAccess` is cached per process (`guiche.runtime.cache`, kind `user_access`) and
dropped everywhere through a bus notice when it changes (`access_changed`); the cache's
TTL is the safety net for a lost notice. The WebSocket layer listens to the same notices
and closes the sockets whose session ended (`guiche.websocket.ws`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guiche.auth.tokens import AccessClaims, InvalidToken
from guiche.database.engine import connection
from guiche.runtime.cache import invalidate, runtime_cache

if TYPE_CHECKING:
    from guiche.runtime.services import Services

#: `guiche.runtime.cache` kind of a user's `UserAccess`, keyed by user id.
USER_ACCESS = "user_access"

_LOAD = """
SELECT u.token_version, u.is_platform_admin,
       coalesce(array_agg(m.tenant) FILTER (WHERE m.id IS NOT NULL), '{}') AS tenants,
       coalesce(array_agg(m.role) FILTER (WHERE m.id IS NOT NULL), '{}') AS roles
FROM users u
LEFT JOIN memberships m
       ON m."user" = u.id AND m.is_active
      AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = m.tenant AND t.is_active)
WHERE u.id = $1 AND u.is_active
GROUP BY u.id
"""


@dataclass(frozen=True, slots=True)
class UserAccess:
    """What a user's tokens may do now: None of it once the account is disabled."""

    token_version: int
    platform_admin: bool
    seats: Mapping[uuid.UUID, str]  # active seat's company → role


#: Cached for a disabled or unknown account (the cache keeps no None).
_NO_ACCESS = UserAccess(token_version=-1, platform_admin=False, seats={})


async def user_access(services: Services, user_id: uuid.UUID) -> UserAccess:
    """The user's current access, from this process's cache or one query."""
    cache = runtime_cache(services)
    cached: UserAccess | None = cache.get(USER_ACCESS, user_id)
    if cached is not None:
        return cached
    generation = cache.generation
    async with connection(services.db) as conn:  # joins a caller's transaction, if any
        row = await conn.fetchrow(_LOAD, user_id)
    access = _NO_ACCESS if row is None else _from_row(row)
    cache.put(USER_ACCESS, user_id, access, generation)
    return access


def _from_row(row: Any) -> UserAccess:
    return UserAccess(
        token_version=row["token_version"],
        platform_admin=row["is_platform_admin"],
        seats=dict(zip(row["tenants"], row["roles"], strict=True)),
    )


def current_role(access: UserAccess, claims: AccessClaims) -> str:
    """The role the token's holder has now; raises InvalidToken when the session ended."""
    if access is _NO_ACCESS or claims.token_version != access.token_version:
        raise InvalidToken("Session ended: sign in again")
    role = access.seats.get(claims.tenant_id)
    if role is None:
        raise InvalidToken("No active seat in this company any more")
    return role


def forget_locally(services: Services, user_id: uuid.UUID) -> None:
    """Drop this process's copy: a sign-in reads the account afresh, so a change made
    outside the app (the CLI's platform grant, SQL) holds from the next login here."""
    runtime_cache(services).drop(USER_ACCESS, user_id)


async def access_changed(services: Services, user_id: uuid.UUID) -> None:
    """Drop the user's cached access here and in every process (closing ended sessions'
    sockets); call it after the change commits."""
    await invalidate(services, USER_ACCESS, user_id)


async def end_sessions(conn: Any, user_id: uuid.UUID, tenant_id: uuid.UUID | None = None) -> int:
    """Invalidate every access token of the user (bump `token_version`) and revoke their
    refresh tokens: all of them, or the company's only with `tenant_id`. Runs on the
    caller's connection, inside its transaction; returns the new version. Call
    `access_changed` after the commit."""
    version: int = await conn.fetchval(
        "UPDATE users SET token_version = token_version + 1 WHERE id = $1 RETURNING token_version",
        user_id,
    )
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() "
        'WHERE "user" = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR tenant = $2)',
        user_id,
        tenant_id,
    )
    return version
