"""Customers. Identity is the E.164 phone where known, else a provider user id."""

from piccolo.columns import JSONB, UUID, Boolean, ForeignKey, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.tenants import Tenant


class Contact(Table, tablename="contacts"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    name = Varchar(length=200, default="")
    phone = Varchar(length=20, null=True, default=None)
    document = Varchar(length=40, null=True, default=None)
    email = Varchar(length=320, null=True, default=None)
    custom_fields = JSONB(default={})
    opted_out = Boolean(default=False)
    opted_out_at = Timestamptz(null=True, default=None)
    chat_kind = Varchar(length=10, default="direct")  # channels.ChatKind: person/group/channel
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class ContactIdentity(Table, tablename="contact_identities"):
    """(channel type, provider user id) → contact, for providers that hide the phone."""

    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    contact = ForeignKey(Contact)
    channel_type = Varchar(length=60)
    provider_user_id = Varchar(length=200)
    created_at = Timestamptz(default=TimestamptzNow())
