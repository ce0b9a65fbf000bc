"""Who is calling: a user acting in their active company, or a company's API key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from guiche.foundation.errors import Forbidden, Unauthorized


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: uuid.UUID
    role: str
    permissions: frozenset[str]
    kind: Literal["user", "api_key"] = "user"
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    is_platform_admin: bool = False
    scopes: frozenset[str] = field(default_factory=frozenset)
    token_version: int = 0  # a user's session version when their token was checked

    def can(self, permission: str) -> bool:
        return permission in self.permissions


PRINCIPAL_KEY = web.RequestKey("guiche.principal", Principal)


def current_principal(request: web.Request) -> Principal:
    """The authenticated caller; raises 401 where the auth middleware found none."""
    principal = request.get(PRINCIPAL_KEY)
    if principal is None:
        raise Unauthorized("Authentication required", code="not_authenticated")
    return principal


def signed_in_user(request: web.Request) -> tuple[Principal, uuid.UUID]:
    """The principal and its user id: 403 for API keys, which act for a company, not a person."""
    principal = current_principal(request)
    if principal.kind != "user" or principal.user_id is None:
        raise Forbidden("This needs a signed-in user, not an API key", code="user_required")
    return principal, principal.user_id
