"""Companies, people and who serves which company in which role."""

from piccolo.columns import JSONB, UUID, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

ROLES = ("owner", "admin", "supervisor", "agent", "viewer")
PRESENCE = ("online", "away", "offline")


class Tenant(Table, tablename="tenants"):
    id = UUID(primary_key=True)
    name = Varchar(length=200)
    slug = Varchar(length=80, unique=True)
    settings = JSONB(default={})
    is_active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())


class User(Table, tablename="users"):
    id = UUID(primary_key=True)
    email = Varchar(length=320, unique=True)
    name = Varchar(length=200)
    password_hash = Text()
    is_active = Boolean(default=True)
    is_platform_admin = Boolean(default=False)
    # Bumped to end every session at once (guiche.auth.access); tokens carry it as `ver`.
    token_version = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())


class Membership(Table, tablename="memberships"):
    """A user's seat in one company: role, presence and chat capacity live here."""

    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    user = ForeignKey(User)
    role = Varchar(length=20)
    is_active = Boolean(default=True)
    status = Varchar(length=10, default="offline")
    status_changed_at = Timestamptz(default=TimestamptzNow())
    max_concurrent_chats = Integer(default=5)
    last_assigned_at = Timestamptz(null=True, default=None)
    # This company's name for the person; None shows their own `User.name`.
    display_name = Varchar(length=200, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Invitation(Table, tablename="invitations"):
    """A company's offer of a seat to an email; a seat exists only once it is accepted."""

    id = UUID(primary_key=True)
    tenant = ForeignKey(Tenant)
    email = Varchar(length=320)
    display_name = Varchar(length=200, default="")
    role = Varchar(length=20)
    max_concurrent_chats = Integer(default=5)
    status = Varchar(length=10, default="pending")
    invited_by = ForeignKey(User, null=True, default=None)
    responded_by = ForeignKey(User, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    responded_at = Timestamptz(null=True, default=None)
