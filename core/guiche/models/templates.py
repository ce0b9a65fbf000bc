"""Message templates (approved provider templates and canned replies)."""

from piccolo.columns import JSONB, UUID, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.channels import Channel
from guiche.models.tenants import Tenant


class Template(Table, tablename="templates"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    channel = ForeignKey(Channel, null=True, default=None)
    name = Varchar(length=200)
    language = Varchar(length=20, default="pt_BR")
    category = Varchar(length=40, default="UTILITY")
    body = Text(default="")
    components = JSONB(default=[])
    status = Varchar(length=30, default="APPROVED")
    external_id = Varchar(length=200, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
