"""Refresh tokens (rotated, grouped in families) and per-tenant API keys; both stored hashed."""

from piccolo.columns import JSONB, UUID, ForeignKey, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.tenants import Tenant, User


class RefreshToken(Table, tablename="refresh_tokens"):
    id = UUID(primary_key=True)
    user = ForeignKey(User)
    tenant = ForeignKey(Tenant)
    family = UUID()
    token_hash = Varchar(length=64, unique=True)
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class ApiKey(Table, tablename="api_keys"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    name = Varchar(length=120)
    prefix = Varchar(length=16)
    key_hash = Varchar(length=64, unique=True)
    role = Varchar(length=20, default="admin")
    scopes = JSONB(default=[])
    created_by = ForeignKey(User, null=True, default=None)
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
