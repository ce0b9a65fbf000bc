"""The plugin's own tables: what is ChatGuru-specific (accounts, phones, agents, chats,
delegations, tags, funnel steps, notes, catalog jobs). Messages and contacts live in
core's tables. Every row carries its `tenant`; every query filters by it.

The schema is the SQL migration's (`piccolo_migrations/`); these classes bind the
tables to the app's engine and run the plugin's raw queries.
"""

from __future__ import annotations

from piccolo.columns import UUID, Boolean, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class ChatGuruAccount(Table, tablename="chatguru_accounts"):
    """One ChatGuru account = one Guichê channel of type `chatguru` (same id)."""

    id = UUID(primary_key=True)
    tenant = UUID()
    polling_enabled = Boolean(default=False)
    lease_owner = Text(null=True, default=None)
    lease_until = Timestamptz(null=True, default=None)
    last_poll_at = Timestamptz(null=True, default=None)
    last_poll_error = Text(null=True, default=None)


class ChatGuruPhone(Table, tablename="chatguru_phones"):
    tenant = UUID()
    account = UUID()
    phone_id = Varchar(length=64)


class ChatGuruAgent(Table, tablename="chatguru_agents"):
    tenant = UUID()
    account = UUID()
    agent_id = Varchar(length=64)


class ChatGuruChat(Table, tablename="chatguru_chats"):
    tenant = UUID()
    account = UUID()
    chat_id = Varchar(length=64)
    wa_chat_id = Varchar(length=120)
    conversation = UUID(null=True, default=None)


class ChatGuruDelegation(Table, tablename="chatguru_delegations"):
    tenant = UUID()
    account = UUID()
    chat_id = Varchar(length=64)
    agent_id = Varchar(length=64)
    from_at = Timestamptz()
    to_at = Timestamptz(null=True, default=None)


class ChatGuruChatTag(Table, tablename="chatguru_chat_tags"):
    tenant = UUID()
    account = UUID()
    chat_id = Varchar(length=64)
    tag = Varchar(length=120)
    from_at = Timestamptz()
    to_at = Timestamptz(null=True, default=None)


class ChatGuruFunnelStep(Table, tablename="chatguru_chat_funnel_steps"):
    tenant = UUID()
    account = UUID()
    chat_id = Varchar(length=64)
    step = Varchar(length=120)
    from_at = Timestamptz()
    to_at = Timestamptz(null=True, default=None)


class ChatGuruNote(Table, tablename="chatguru_notes"):
    tenant = UUID()
    account = UUID()
    chat_id = Varchar(length=64)
    note_id = Varchar(length=64)
    author = Varchar(length=200)
    text = Text()
    at = Timestamptz()


class ChatGuruCatalogJob(Table, tablename="chatguru_catalog_jobs"):
    id = UUID(primary_key=True)
    tenant = UUID()
    account = UUID()
    state = Varchar(length=20)
    chats_total = Integer(default=0)
    chats_done = Integer(default=0)


TABLES: tuple[type[Table], ...] = (
    ChatGuruAccount,
    ChatGuruPhone,
    ChatGuruAgent,
    ChatGuruChat,
    ChatGuruDelegation,
    ChatGuruChatTag,
    ChatGuruFunnelStep,
    ChatGuruNote,
    ChatGuruCatalogJob,
)
