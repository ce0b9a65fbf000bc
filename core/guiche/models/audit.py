"""Append-only record of who changed what, per tenant."""

from piccolo.columns import JSONB, UUID, BigSerial, ForeignKey, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.tenants import Tenant, User


class AuditLog(Table, tablename="audit_log"):
    id = BigSerial(primary_key=True)
    tenant = ForeignKey(Tenant)
    actor = ForeignKey(User, null=True, default=None)
    action = Varchar(length=80)
    target_type = Varchar(length=40)
    target_id = UUID(null=True, default=None)
    data = JSONB(default={})
    created_at = Timestamptz(default=TimestamptzNow())
