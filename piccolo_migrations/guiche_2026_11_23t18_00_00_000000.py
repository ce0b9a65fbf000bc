"""Initial schema: tenants, people, contacts, channels, conversations, messages and the rest.

Written as SQL because the schema needs what Piccolo's auto-migrations cannot express:
a composite primary key on the time-partitioned `messages` table, partial unique
indexes, the optional TimescaleDB hypertable and the optional pg_trgm index.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

from guiche.database import timescale

ID = "2026-11-23T18:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Initial core schema"

SCHEMA = """
CREATE TABLE tenants (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name varchar(200) NOT NULL,
    slug varchar(80) NOT NULL UNIQUE,
    settings jsonb NOT NULL DEFAULT '{}',
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email varchar(320) NOT NULL,
    name varchar(200) NOT NULL DEFAULT '',
    password_hash text NOT NULL DEFAULT '',
    is_active boolean NOT NULL DEFAULT true,
    is_platform_admin boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE memberships (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    "user" uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role varchar(20) NOT NULL CHECK (role IN ('owner','admin','supervisor','agent','viewer')),
    is_active boolean NOT NULL DEFAULT true,
    status varchar(10) NOT NULL DEFAULT 'offline' CHECK (status IN ('online','away','offline')),
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    max_concurrent_chats integer NOT NULL DEFAULT 5 CHECK (max_concurrent_chats >= 0),
    last_assigned_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, "user")
);
CREATE INDEX memberships_user_idx ON memberships ("user");

CREATE TABLE departments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name varchar(120) NOT NULL,
    description text NOT NULL DEFAULT '',
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX departments_tenant_name_key ON departments (tenant, lower(name));

CREATE TABLE department_members (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    department uuid NOT NULL REFERENCES departments(id) ON DELETE CASCADE,
    "user" uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (department, "user")
);
CREATE INDEX department_members_user_idx ON department_members (tenant, "user");

CREATE TABLE contacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name varchar(200) NOT NULL DEFAULT '',
    phone varchar(20),
    document varchar(40),
    email varchar(320),
    custom_fields jsonb NOT NULL DEFAULT '{}',
    opted_out boolean NOT NULL DEFAULT false,
    opted_out_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX contacts_tenant_phone_key ON contacts (tenant, phone) WHERE phone IS NOT NULL;
CREATE INDEX contacts_tenant_created_idx ON contacts (tenant, created_at DESC, id DESC);
CREATE INDEX contacts_tenant_document_idx ON contacts (tenant, document) WHERE document IS NOT NULL;
CREATE INDEX contacts_tenant_email_idx ON contacts (tenant, lower(email)) WHERE email IS NOT NULL;

CREATE TABLE contact_identities (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    contact uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    channel_type varchar(60) NOT NULL,
    provider_user_id varchar(200) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, channel_type, provider_user_id)
);
CREATE INDEX contact_identities_contact_idx ON contact_identities (contact);

CREATE TABLE channels (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    type varchar(60) NOT NULL,
    name varchar(120) NOT NULL,
    phone varchar(20),
    credentials_encrypted text NOT NULL DEFAULT '',
    is_active boolean NOT NULL DEFAULT true,
    state varchar(30) NOT NULL DEFAULT 'new',
    state_detail text NOT NULL DEFAULT '',
    default_department uuid REFERENCES departments(id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channels_tenant_idx ON channels (tenant, created_at DESC, id DESC);

CREATE TABLE tabulations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name varchar(120) NOT NULL,
    description text NOT NULL DEFAULT '',
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tabulations_tenant_name_key ON tabulations (tenant, lower(name));

CREATE TABLE conversations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    contact uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    channel uuid NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    department uuid REFERENCES departments(id) ON DELETE SET NULL,
    assignee uuid REFERENCES users(id) ON DELETE SET NULL,
    status varchar(10) NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('BOT','PENDING','ACTIVE','CLOSED')),
    tabulation uuid REFERENCES tabulations(id) ON DELETE SET NULL,
    opened_at timestamptz NOT NULL DEFAULT now(),
    first_agent_reply_at timestamptz,
    closed_at timestamptz,
    last_inbound_at timestamptz,
    last_message_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX conversations_one_open_key
    ON conversations (contact, channel) WHERE status <> 'CLOSED';
CREATE INDEX conversations_tenant_status_idx
    ON conversations (tenant, status, created_at DESC, id DESC);
CREATE INDEX conversations_assignee_idx
    ON conversations (tenant, assignee) WHERE status <> 'CLOSED';

CREATE TABLE messages (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    conversation uuid REFERENCES conversations(id) ON DELETE CASCADE,
    contact uuid REFERENCES contacts(id) ON DELETE SET NULL,
    channel uuid REFERENCES channels(id) ON DELETE SET NULL,
    direction varchar(3) NOT NULL CHECK (direction IN ('in','out')),
    type varchar(20) NOT NULL DEFAULT 'text',
    body text NOT NULL DEFAULT '',
    payload jsonb NOT NULL DEFAULT '{}',
    provider_message_id varchar(200),
    status varchar(10) NOT NULL DEFAULT 'pending',
    error jsonb,
    sender uuid REFERENCES users(id) ON DELETE SET NULL,
    reply_to uuid,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
);
CREATE INDEX messages_conversation_idx ON messages (conversation, created_at DESC, id DESC);
CREATE INDEX messages_contact_idx ON messages (tenant, contact, created_at DESC, id DESC);

CREATE TABLE message_keys (
    channel uuid NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    provider_message_id varchar(200) NOT NULL,
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    message_id uuid NOT NULL,
    message_created_at timestamptz NOT NULL,
    PRIMARY KEY (channel, provider_message_id)
);

CREATE TABLE notes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    author uuid REFERENCES users(id) ON DELETE SET NULL,
    contact uuid REFERENCES contacts(id) ON DELETE CASCADE,
    conversation uuid REFERENCES conversations(id) ON DELETE CASCADE,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (contact IS NOT NULL OR conversation IS NOT NULL)
);
CREATE INDEX notes_tenant_idx ON notes (tenant, created_at DESC, id DESC);

CREATE TABLE templates (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    channel uuid REFERENCES channels(id) ON DELETE CASCADE,
    name varchar(200) NOT NULL,
    language varchar(20) NOT NULL DEFAULT 'pt_BR',
    category varchar(40) NOT NULL DEFAULT 'UTILITY',
    body text NOT NULL DEFAULT '',
    components jsonb NOT NULL DEFAULT '[]',
    status varchar(30) NOT NULL DEFAULT 'APPROVED',
    external_id varchar(200),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX templates_tenant_channel_name_lang_key
    ON templates (tenant, coalesce(channel, '00000000-0000-0000-0000-000000000000'),
                  name, language);

CREATE TABLE tenant_plugins (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    plugin varchar(80) NOT NULL,
    enabled boolean NOT NULL DEFAULT false,
    settings jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, plugin)
);
CREATE INDEX tenant_plugins_enabled_idx ON tenant_plugins (plugin) WHERE enabled;

CREATE TABLE refresh_tokens (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    "user" uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    family uuid NOT NULL,
    token_hash varchar(64) NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family);

CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name varchar(120) NOT NULL,
    prefix varchar(16) NOT NULL,
    key_hash varchar(64) NOT NULL UNIQUE,
    role varchar(20) NOT NULL DEFAULT 'admin'
        CHECK (role IN ('owner','admin','supervisor','agent','viewer')),
    scopes jsonb NOT NULL DEFAULT '[]',
    created_by uuid REFERENCES users(id) ON DELETE SET NULL,
    last_used_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant, created_at DESC, id DESC);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    actor uuid REFERENCES users(id) ON DELETE SET NULL,
    action varchar(80) NOT NULL,
    target_type varchar(40) NOT NULL,
    target_id uuid,
    data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant, id DESC);

CREATE TABLE provider_usage (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    channel uuid REFERENCES channels(id) ON DELETE SET NULL,
    message_id uuid,
    provider_message_id varchar(200),
    pricing_model varchar(40) NOT NULL DEFAULT '',
    category varchar(40) NOT NULL DEFAULT '',
    billable boolean NOT NULL DEFAULT false,
    cost numeric(12, 6),
    currency varchar(3) NOT NULL DEFAULT 'USD',
    details jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_usage_tenant_idx ON provider_usage (tenant, created_at DESC);
"""

DROP = """
DROP TABLE IF EXISTS provider_usage, audit_log, api_keys, refresh_tokens, tenant_plugins,
    templates, notes, message_keys, messages, conversations, tabulations, channels,
    contact_identities, contacts, department_members, departments, memberships, users,
    tenants CASCADE;
"""


async def _try_in_savepoint(sql: str) -> bool:
    """Run optional DDL (an extension may be missing) without aborting the migration."""
    transaction = engine_finder().current_transaction.get()
    savepoint = await transaction.savepoint()
    try:
        await transaction.connection.execute(sql)
    except Exception:
        await savepoint.rollback_to()
        return False
    await savepoint.release()
    return True


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="guiche", description=DESCRIPTION)

    async def create_schema() -> None:
        engine = engine_finder()
        transaction = engine.current_transaction.get()
        await transaction.connection.execute(SCHEMA)
        if await _try_in_savepoint("CREATE EXTENSION IF NOT EXISTS pg_trgm"):
            await transaction.connection.execute(
                "CREATE INDEX contacts_name_trgm_idx ON contacts USING gin (name gin_trgm_ops)"
            )
        else:
            await transaction.connection.execute(
                "CREATE INDEX contacts_name_lower_idx ON contacts (tenant, lower(name))"
            )
        # Decided from what the server says before trying: with the package installed
        # but not preloaded, CREATE EXTENSION is FATAL (guiche.database.timescale).
        if (await timescale.enable(transaction.connection)).use:
            # No default (created_at DESC) index: the planner walked it for long
            # conversations instead of messages_conversation_idx (10x slower pages).
            await transaction.connection.execute(
                "SELECT create_hypertable('messages', 'created_at',"
                f" chunk_time_interval => interval '{timescale.CHUNK_INTERVAL}',"
                " create_default_indexes => false)"
            )
            # Foreign keys and compression: the 2026-12-05 migration.

    async def drop_schema() -> None:
        engine = engine_finder()
        await engine.current_transaction.get().connection.execute(DROP)

    manager.add_raw(create_schema)
    manager.add_raw_backwards(drop_schema)
    return manager
