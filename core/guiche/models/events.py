"""The durable event log: every real-time event gets a sequence number for resync."""

from piccolo.columns import JSONB, UUID, BigSerial, ForeignKey, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.tenants import Tenant


class Event(Table, tablename="events"):
    seq = BigSerial(primary_key=True)
    tenant = ForeignKey(Tenant)
    type = Varchar(length=40)
    conversation = UUID(null=True, default=None)
    department = UUID(null=True, default=None)
    assignee = UUID(null=True, default=None)
    data = JSONB(default={})
    created_at = Timestamptz(default=TimestamptzNow())


class IdempotencyKey(Table, tablename="idempotency_keys"):
    """A client's `Idempotency-Key` and the first answer it got (composite key tenant+key)."""

    key = Varchar(length=200, primary_key=True)
    tenant = ForeignKey(Tenant)
    request_hash = Varchar(length=64)
    status = Integer(default=0)
    response = JSONB(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
