"""API keys: per-company credentials for server-to-server callers (header `x-api-key`).

A key reads `gk_<prefix>_<secret>`; only its SHA-256 digest is stored, the prefix is
kept in clear so people can tell their keys apart in a list. A key acts with its role's
permissions, narrowed to its scopes when it has any.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from guiche.auth.principal import Principal
from guiche.models import ApiKey
from guiche.tenancy.rbac import PermissionRegistry

KEY_MARK = "gk_"
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class InvalidApiKey(Exception):
    """No live key matches (unknown, revoked, or its company is inactive)."""


@dataclass(frozen=True)
class NewApiKey:
    key: str  # shown to the creator once, never stored
    prefix: str
    digest: str


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_api_key() -> NewApiKey:
    prefix = secrets.token_hex(4)
    key = f"{KEY_MARK}{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(key=key, prefix=prefix, digest=key_digest(key))


def key_permissions(
    permissions: PermissionRegistry, role: str, scopes: frozenset[str]
) -> frozenset[str]:
    """What a key may do: its role's permissions, intersected with its scopes if any."""
    granted = permissions.for_role(role)
    return granted & scopes if scopes else granted


def _scopes(raw: Any) -> frozenset[str]:
    values = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return frozenset(str(v) for v in values or ())


async def authenticate_api_key(permissions: PermissionRegistry, key: str) -> Principal:
    """The principal a presented key acts as; raises InvalidApiKey."""
    if not key.startswith(KEY_MARK) or len(key) > 200:
        raise InvalidApiKey("Invalid API key")
    rows = await ApiKey.raw(
        "SELECT k.id, k.tenant, k.role, k.scopes, k.last_used_at, now() AS db_now "
        "FROM api_keys k JOIN tenants t ON t.id = k.tenant "
        "WHERE k.key_hash = {} AND k.revoked_at IS NULL AND t.is_active",
        key_digest(key),
    )
    if not rows:
        raise InvalidApiKey("Invalid API key")
    row = rows[0]
    last_used = row["last_used_at"]
    if last_used is None or row["db_now"] - last_used >= LAST_USED_RESOLUTION:
        await _touch(row["id"])
    scopes = _scopes(row["scopes"])
    return Principal(
        tenant_id=row["tenant"],
        role=row["role"],
        permissions=key_permissions(permissions, row["role"], scopes),
        kind="api_key",
        api_key_id=row["id"],
        scopes=scopes,
    )


async def _touch(key_id: uuid.UUID) -> None:
    """Record use at most once a minute: a busy key must not write on every request."""
    await ApiKey.raw(
        "UPDATE api_keys SET last_used_at = now() WHERE id = {} "
        "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        key_id,
    )
