"""Messages (time-partitioned; a hypertable on TimescaleDB) and their durable dedup keys.

The table's primary key is (id, created_at); Piccolo only needs `id` to address a row.
"""

from piccolo.columns import JSONB, UUID, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.channels import Channel
from guiche.models.contacts import Contact
from guiche.models.conversations import Conversation
from guiche.models.tenants import Tenant, User


class Message(Table, tablename="messages"):
    id = UUID(primary_key=True)
    created_at = Timestamptz(default=TimestamptzNow())
    tenant = ForeignKey(Tenant)
    conversation = ForeignKey(Conversation, null=True, default=None)
    contact = ForeignKey(Contact, null=True, default=None)
    channel = ForeignKey(Channel, null=True, default=None)
    direction = Varchar(length=3)
    type = Varchar(length=20, default="text")
    body = Text(default="")
    payload = JSONB(default={})
    provider_message_id = Varchar(length=200, null=True, default=None)
    status = Varchar(length=10, default="pending")
    error = JSONB(null=True, default=None)
    sender = ForeignKey(User, null=True, default=None)
    reply_to = UUID(null=True, default=None)
    #: An opaque tag from the plugin that sent it (`campaign:<id>`), carried onto usage.
    origin = Varchar(length=200, null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class MessageKey(Table, tablename="message_keys"):
    """One row per provider message id per channel: the dedup that outlives any cache."""

    provider_message_id = Varchar(length=200, primary_key=True)  # with channel: composite key
    channel = ForeignKey(Channel)
    tenant = ForeignKey(Tenant)
    message_id = UUID()
    message_created_at = Timestamptz()
