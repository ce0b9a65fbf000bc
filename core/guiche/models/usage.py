"""What providers bill us for, per message or conversation, for cost dashboards."""

from piccolo.columns import JSONB, UUID, Boolean, ForeignKey, Numeric, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.channels import Channel
from guiche.models.tenants import Tenant


class ProviderUsage(Table, tablename="provider_usage"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    channel = ForeignKey(Channel, null=True, default=None)
    message_id = UUID(null=True, default=None)
    provider_message_id = Varchar(length=200, null=True, default=None)
    pricing_model = Varchar(length=40, default="")
    category = Varchar(length=40, default="")
    billable = Boolean(default=False)
    cost = Numeric(digits=(12, 6), null=True, default=None)
    currency = Varchar(length=3, default="USD")
    details = JSONB(default={})
    created_at = Timestamptz(default=TimestamptzNow())
