"""Stored media (uploads and downloaded attachments), owned by one tenant."""

from piccolo.columns import UUID, BigInt, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.tenants import Tenant


class MediaFile(Table, tablename="media_files"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    storage_key = Text()
    mime_type = Varchar(length=120, default="application/octet-stream")
    size = BigInt(default=0)
    filename = Varchar(length=255, null=True, default=None)
    sha256 = Varchar(length=64, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
