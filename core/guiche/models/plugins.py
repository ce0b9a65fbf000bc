"""Per-tenant plugin enablement and settings: installed is code, enabled is data."""

from piccolo.columns import JSONB, UUID, Boolean, ForeignKey, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.tenants import Tenant


class TenantPlugin(Table, tablename="tenant_plugins"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    plugin = Varchar(length=80)
    enabled = Boolean(default=False)
    settings = JSONB(default={})
    updated_at = Timestamptz(default=TimestamptzNow())
