"""Who is calling: resolve `Authorization: Bearer <jwt>` or `x-api-key` into a Principal.

The middleware only identifies; whether a route needs a caller at all is the route's
`@endpoint` declaration. A credential that is presented but bad is refused here (401),
so a client never silently proceeds as anonymous with a broken token.
"""

from __future__ import annotations

from typing import NamedTuple

from aiohttp import web
from aiohttp.typedefs import Handler

from guiche.auth.access import UserAccess, current_role, user_access
from guiche.auth.api_keys import InvalidApiKey, authenticate_api_key
from guiche.auth.principal import PRINCIPAL_KEY, Principal
from guiche.auth.tokens import AccessClaims, InvalidToken, decode_access_token, signing_key
from guiche.foundation.config import Settings
from guiche.foundation.errors import Unauthorized
from guiche.runtime.services import Services, services_of
from guiche.tenancy.rbac import PLATFORM_PERMISSIONS

API_KEY_HEADER = "x-api-key"
_UNAUTHENTICATED_PREFIXES = ("/webhooks/",)  # providers sign their own requests


class VerifiedClaims(NamedTuple):
    """A token's claims with the access that still stands behind them."""

    claims: AccessClaims
    access: UserAccess
    role: str  # the seat's current role


def check_auth_settings(settings: Settings) -> None:
    """Fail app creation (ConfigError) when no usable GUICHE_SECRET_KEY is configured."""
    signing_key(settings)


async def principal_from_access_token(services: Services, token: str) -> Principal:
    """The principal an access token stands for (also used by the WebSocket handshake).

    Raises InvalidToken when the token is bad or its session ended (`guiche.auth.access`);
    the role and the platform flag are the user's current ones, not the token's."""
    return principal_for(services, await verified_claims(services, token))


async def verified_claims(services: Services, token: str) -> VerifiedClaims:
    claims = decode_access_token(services.settings, token)
    access = await user_access(services, claims.user_id)
    return VerifiedClaims(claims, access, current_role(access, claims))


def principal_for(services: Services, verified: VerifiedClaims) -> Principal:
    permissions = services.permissions.for_role(verified.role)
    if verified.access.platform_admin:
        permissions |= PLATFORM_PERMISSIONS
    return Principal(
        tenant_id=verified.claims.tenant_id,
        role=verified.role,
        permissions=permissions,
        kind="user",
        user_id=verified.claims.user_id,
        is_platform_admin=verified.access.platform_admin,
        token_version=verified.access.token_version,
    )


def _invalid(message: str) -> Unauthorized:
    return Unauthorized(
        message,
        code="invalid_token",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


async def resolve_principal(request: web.Request) -> Principal | None:
    """The caller named by the request's credential; None when it presents none."""
    services = services_of(request)
    authorization = request.headers.get("Authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _invalid("Use `Authorization: Bearer <access token>`")
        try:
            return await principal_from_access_token(services, token.strip())
        except InvalidToken as exc:
            raise _invalid(str(exc)) from None
    api_key = request.headers.get(API_KEY_HEADER)
    if api_key:
        try:
            return await authenticate_api_key(services.permissions, api_key.strip())
        except InvalidApiKey as exc:
            raise _invalid(str(exc)) from None
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(_UNAUTHENTICATED_PREFIXES):
        principal = await resolve_principal(request)
        if principal is not None:
            request[PRINCIPAL_KEY] = principal
    return await handler(request)
