"""Per-company API keys: create (the key is shown once), list, revoke."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from guiche.auth.api_keys import generate_api_key, key_permissions
from guiche.auth.principal import Principal, current_principal
from guiche.companies.audit import record_audit
from guiche.foundation.errors import Forbidden, NotFound, ValidationFailed
from guiche.http.endpoint import endpoint
from guiche.http.pagination import Page, PageQuery, paginate
from guiche.models import ApiKey
from guiche.runtime.services import services_of
from guiche.tenancy.rbac import PLATFORM_PERMISSIONS, ROLES
from guiche.tenancy.scope import owned, parse_uuid

routes = web.RouteTableDef()
PERMISSION = "api_keys.manage"
TAGS = ("api-keys",)

Role = Literal["owner", "admin", "supervisor", "agent", "viewer"]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    role: Role | None = Field(None, description="Defaults to admin (or the creator's, if lower)")
    scopes: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="Permissions the key is narrowed to; empty means all of its role's",
    )


class ApiKeyListQuery(PageQuery):
    include_revoked: bool = False


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    role: str
    scopes: list[str]
    created_by: uuid.UUID | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The full key; shown only in this response")


_COLUMNS = (
    ApiKey.id,
    ApiKey.name,
    ApiKey.prefix,
    ApiKey.role,
    ApiKey.scopes,
    ApiKey.created_by,
    ApiKey.created_at,
    ApiKey.last_used_at,
    ApiKey.revoked_at,
)


def _out(row: dict[str, Any]) -> ApiKeyOut:
    scopes = row["scopes"]
    if isinstance(scopes, str | bytes):
        scopes = orjson.loads(scopes)
    return ApiKeyOut(**{**row, "scopes": scopes})


def _rank(role: str) -> int:
    return ROLES.index(role)  # 0 is the most powerful


def _granted_role(principal: Principal, requested: str | None) -> str:
    """The key's role: never above the creator's (an admin cannot mint an owner key)."""
    if requested is None:
        return "admin" if _rank(principal.role) <= _rank("admin") else principal.role
    if _rank(requested) < _rank(principal.role):
        raise Forbidden(
            f"A {principal.role} cannot create a key with role {requested!r}",
            code="role_exceeds_caller",
            details={"role": requested, "caller_role": principal.role},
        )
    return requested


@routes.post("/api/v1/api-keys")
@endpoint(
    PERMISSION,
    body=ApiKeyCreate,
    response=ApiKeyCreated,
    status=201,
    summary="Create an API key (returned once)",
    tags=TAGS,
)
async def create_api_key(request: web.Request, *, body: ApiKeyCreate) -> ApiKeyCreated:
    principal = current_principal(request)
    registry = services_of(request).permissions
    role = _granted_role(principal, body.role)
    role_permissions = registry.for_role(role)
    scopes = frozenset(body.scopes)
    problems = [
        {"field": "scopes", "message": f"{scope!r} is not a permission of role {role!r}"}
        for scope in sorted(scopes)
        if scope not in role_permissions or scope in PLATFORM_PERMISSIONS
    ]
    if problems:
        raise ValidationFailed("Invalid scopes", details=problems)
    beyond = key_permissions(registry, role, scopes) - principal.permissions
    if beyond:
        raise Forbidden(
            "The key would have permissions you do not have",
            code="scope_exceeds_caller",
            details={"permissions": sorted(beyond)},
        )
    new = generate_api_key()
    async with ApiKey._meta.db.transaction():
        rows = await ApiKey.insert(
            ApiKey(
                tenant=principal.tenant_id,
                name=body.name,
                prefix=new.prefix,
                key_hash=new.digest,
                role=role,
                scopes=sorted(scopes),
                created_by=principal.user_id,
            )
        ).returning(*_COLUMNS)
        created = _out(rows[0])
        await record_audit(
            principal,
            "api_key.created",
            "api_key",
            created.id,
            {
                "name": created.name,
                "prefix": created.prefix,
                "role": role,
                "scopes": created.scopes,
            },
        )
    return ApiKeyCreated(**created.model_dump(), key=new.key)


@routes.get("/api/v1/api-keys")
@endpoint(
    PERMISSION,
    query=ApiKeyListQuery,
    response=Page[ApiKeyOut],
    summary="List API keys (never the keys themselves)",
    tags=TAGS,
)
async def list_api_keys(request: web.Request, *, query: ApiKeyListQuery) -> Page[ApiKeyOut]:
    principal = current_principal(request)
    select = owned(ApiKey, principal.tenant_id, *_COLUMNS).output(load_json=True)
    if not query.include_revoked:
        select = select.where(ApiKey.revoked_at.is_null())
    rows, next_cursor = await paginate(select, ApiKey, query)
    return Page[ApiKeyOut](items=[_out(row) for row in rows], next_cursor=next_cursor)


@routes.delete("/api/v1/api-keys/{id}")
@endpoint(PERMISSION, status=204, summary="Revoke an API key", tags=TAGS)
async def revoke_api_key(request: web.Request) -> None:
    principal = current_principal(request)
    key_id = parse_uuid(request.match_info["id"], "API key")
    async with ApiKey._meta.db.transaction():
        revoked = await ApiKey.raw(
            "UPDATE api_keys SET revoked_at = now() "
            "WHERE id = {} AND tenant = {} AND revoked_at IS NULL RETURNING name, prefix",
            key_id,
            principal.tenant_id,
        )
        if revoked:
            await record_audit(principal, "api_key.revoked", "api_key", key_id, revoked[0])
            return
    exists = await ApiKey.exists().where(
        (ApiKey.id == key_id) & (ApiKey.tenant == principal.tenant_id)
    )
    if not exists:
        raise NotFound("API key not found")
