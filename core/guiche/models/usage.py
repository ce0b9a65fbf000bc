"""What providers bill us for (cost dashboards), and every call we made to them (the
per-channel call log an operator reads when a channel misbehaves)."""

from piccolo.columns import (
    JSONB,
    UUID,
    BigSerial,
    Boolean,
    DoublePrecision,
    ForeignKey,
    Integer,
    Numeric,
    Text,
    Timestamptz,
    Varchar,
)
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
    #: The message's `origin` (who sent it, e.g. `campaign:<id>`): cost per origin.
    origin = Varchar(length=200, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class ProviderCall(Table, tablename="provider_calls"):
    """One HTTP call to a provider on a channel's behalf (guiche.provider_http.call_log)."""

    id = BigSerial(primary_key=True)
    tenant = ForeignKey(Tenant)
    channel = ForeignKey(Channel)
    created_at = Timestamptz(default=TimestamptzNow())
    operation = Varchar(length=60)
    method = Varchar(length=10)
    target = Text()
    status = Integer(null=True, default=None)
    latency_ms = DoublePrecision()
    error = Text(null=True, default=None)
