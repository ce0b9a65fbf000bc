"""Configured channels: a tenant's connection to one provider account (a config entry)."""

from piccolo.columns import UUID, Boolean, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.departments import Department
from guiche.models.tenants import Tenant


class Channel(Table, tablename="channels"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    type = Varchar(length=60)
    name = Varchar(length=120)
    phone = Varchar(length=20, null=True, default=None)
    credentials_encrypted = Text(default="")
    is_active = Boolean(default=True)
    state = Varchar(length=30, default="new")
    state_detail = Text(default="")
    #: The provider account this channel holds while active (`guiche.channel_host.claims`).
    provider_identity = Text(null=True, default=None)
    default_department = ForeignKey(Department, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
