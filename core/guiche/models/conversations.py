"""Conversations, their closing reasons (tabulations) and internal notes."""

from piccolo.columns import UUID, Boolean, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from guiche.models.channels import Channel
from guiche.models.contacts import Contact
from guiche.models.departments import Department
from guiche.models.tenants import Tenant, User

STATUSES = ("BOT", "PENDING", "ACTIVE", "CLOSED")


class Tabulation(Table, tablename="tabulations"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    name = Varchar(length=120)
    description = Text(default="")
    is_active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())


class Conversation(Table, tablename="conversations"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    contact = ForeignKey(Contact)
    channel = ForeignKey(Channel)
    department = ForeignKey(Department, null=True, default=None)
    assignee = ForeignKey(User, null=True, default=None)
    status = Varchar(length=10, default="PENDING")
    tabulation = ForeignKey(Tabulation, null=True, default=None)
    opened_at = Timestamptz(default=TimestamptzNow())
    first_agent_reply_at = Timestamptz(null=True, default=None)
    closed_at = Timestamptz(null=True, default=None)
    last_inbound_at = Timestamptz(null=True, default=None)
    last_message_at = Timestamptz(null=True, default=None)
    assigned_at = Timestamptz(null=True, default=None)
    queued_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Note(Table, tablename="notes"):
    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    author = ForeignKey(User, null=True, default=None)
    contact = ForeignKey(Contact, null=True, default=None)
    conversation = ForeignKey(Conversation, null=True, default=None)
    body = Text()
    created_at = Timestamptz(default=TimestamptzNow())
    #: Imported notes (`guiche.conversations.imported_notes`): the writer's name in the
    #: other system, and the key that keeps a re-import from adding it twice.
    author_name = Varchar(length=200, null=True, default=None)
    source_key = Varchar(length=300, null=True, default=None)
