"""Access tokens: short-lived HS256 JWTs naming the user, the active company and the role.

They carry the user's session version (`ver`); whether it, the seat and the role still
hold is checked against a per-process cache (`guiche.auth.access`), so ending a session
takes effect at once. The refresh token (`guiche.auth.refresh`) is what a session keeps.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from dataclasses import dataclass

import jwt

from guiche.foundation.config import ConfigError, Settings

ALGORITHM = "HS256"
MIN_SECRET_LENGTH = 32


class InvalidToken(Exception):
    """The token is malformed, forged, of the wrong type or expired (message says which)."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: str
    platform_admin: bool
    expires_at: dt.datetime
    token_version: int = 0  # tokens from before versions existed carry none: 0


def signing_key(settings: Settings) -> str:
    """The HMAC key; a missing or short one stops the app at start, not at first login."""
    if settings.secret_key is None:
        raise ConfigError(
            "GUICHE_SECRET_KEY: required (a random string of at least "
            f"{MIN_SECRET_LENGTH} characters, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        )
    key = settings.secret_key.get_secret_value()
    if len(key) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"GUICHE_SECRET_KEY: must be at least {MIN_SECRET_LENGTH} characters long"
        )
    return key


def issue_access_token(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    role: str,
    platform_admin: bool,
    token_version: int = 0,
    ttl_seconds: int | None = None,
    now: dt.datetime | None = None,
) -> str:
    """A signed access token; `ttl_seconds`/`now` exist so tests can mint expired ones."""
    issued = now or dt.datetime.now(dt.UTC)
    ttl = settings.access_token_ttl_seconds if ttl_seconds is None else ttl_seconds
    claims = {
        "sub": str(user_id),
        "tid": str(tenant_id),
        "role": role,
        "pa": platform_admin,
        "iat": int(issued.timestamp()),
        "exp": int(issued.timestamp()) + ttl,
        "typ": "access",
        "ver": token_version,
    }
    return jwt.encode(claims, signing_key(settings), algorithm=ALGORITHM)


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Verify signature, expiry and type; raise InvalidToken otherwise.

    A client sends the same token with every request until it expires, so a verified
    token's claims are kept (`_verified`, bounded) and only the expiry is checked again:
    the HMAC and the JSON decoding were a fifth of a history page's own time. Whether
    the session still stands is not decided here (`guiche.auth.access`, per request)."""
    claims = _verified(signing_key(settings), token)
    if claims.expires_at <= dt.datetime.now(dt.UTC):
        raise InvalidToken("Access token expired")
    return claims


@functools.lru_cache(maxsize=4096)
def _verified(key: str, token: str) -> AccessClaims:
    """A token's claims once its signature and shape check out (errors are not cached)."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "tid", "role", "exp", "iat", "typ"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("Access token expired") from None
    except jwt.PyJWTError:
        raise InvalidToken("Invalid access token") from None
    version = claims.get("ver", 0)
    if (
        claims.get("typ") != "access"
        or not isinstance(claims.get("role"), str)
        or type(version) is not int
    ):
        raise InvalidToken("Invalid access token")
    try:
        user_id, tenant_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["tid"])
    except (ValueError, TypeError, AttributeError):
        raise InvalidToken("Invalid access token") from None
    return AccessClaims(
        user_id=user_id,
        tenant_id=tenant_id,
        role=claims["role"],
        platform_admin=claims.get("pa") is True,
        expires_at=dt.datetime.fromtimestamp(claims["exp"], dt.UTC),
        token_version=version,
    )
