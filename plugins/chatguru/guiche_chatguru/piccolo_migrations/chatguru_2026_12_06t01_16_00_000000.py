"""The ChatGuru cataloger's tables: accounts (one per `chatguru` channel, with the
poller's lease and status), the account's phones and agents, chats (with the catalog's
per-chat checkpoint and the live poller's watermark), delegations, tags and funnel steps
with their history, panel notes, and catalog jobs with their progress.
"""

from guiche.plugin import sql_migration

ID = "2026-12-06T01:16:00:000000"
VERSION = "1.0.0"
DESCRIPTION = "chatguru: accounts, phones, agents, chats, delegations, tags, funnel steps"

SCHEMA = """
CREATE TABLE chatguru_accounts (
    id uuid PRIMARY KEY REFERENCES channels (id) ON DELETE CASCADE,
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    polling_enabled boolean NOT NULL DEFAULT false,
    lease_owner text,
    lease_until timestamptz,
    last_poll_at timestamptz,
    last_poll_ms integer,
    last_poll_messages integer NOT NULL DEFAULT 0,
    last_poll_error text,
    last_lag_ms integer,
    polls bigint NOT NULL DEFAULT 0,
    poll_errors bigint NOT NULL DEFAULT 0,
    messages_polled bigint NOT NULL DEFAULT 0,
    account_name text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chatguru_accounts_tenant_idx ON chatguru_accounts (tenant);
CREATE INDEX chatguru_accounts_polling_idx ON chatguru_accounts (polling_enabled)
    WHERE polling_enabled;

CREATE TABLE chatguru_phones (
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account uuid NOT NULL REFERENCES chatguru_accounts (id) ON DELETE CASCADE,
    phone_id varchar(64) NOT NULL,
    chats integer NOT NULL DEFAULT 0,
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, phone_id)
);

CREATE TABLE chatguru_agents (
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account uuid NOT NULL REFERENCES chatguru_accounts (id) ON DELETE CASCADE,
    agent_id varchar(64) NOT NULL,
    name varchar(200),
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, agent_id)
);

CREATE TABLE chatguru_chats (
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account uuid NOT NULL REFERENCES chatguru_accounts (id) ON DELETE CASCADE,
    chat_id varchar(64) NOT NULL,
    wa_chat_id varchar(120) NOT NULL,
    number varchar(120) NOT NULL,
    name varchar(200) NOT NULL DEFAULT '',
    kind varchar(10) NOT NULL DEFAULT 'direct',
    phone_id varchar(64),
    status varchar(40),
    archived boolean NOT NULL DEFAULT false,
    upstream_updated_at timestamptz,
    last_message_at timestamptz,
    catalog_done boolean NOT NULL DEFAULT false,
    catalog_page integer NOT NULL DEFAULT 0,
    newest_message_id varchar(64),
    newest_message_at timestamptz,
    messages integer NOT NULL DEFAULT 0,
    first_seen timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, chat_id)
);
CREATE INDEX chatguru_chats_tenant_idx ON chatguru_chats (tenant, last_message_at DESC);
CREATE INDEX chatguru_chats_number_idx ON chatguru_chats (tenant, number);

CREATE TABLE chatguru_delegations (
    id bigserial PRIMARY KEY,
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account uuid NOT NULL,
    chat_id varchar(64) NOT NULL,
    agent_id varchar(64) NOT NULL,
    from_at timestamptz NOT NULL,
    to_at timestamptz,
    FOREIGN KEY (account, chat_id) REFERENCES chatguru_chats (account, chat_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX chatguru_delegations_current_key
    ON chatguru_delegations (account, chat_id, agent_id) WHERE to_at IS NULL;
CREATE INDEX chatguru_delegations_agent_idx ON chatguru_delegations (tenant, agent_id);

CREATE TABLE chatguru_chat_tags (
    id bigserial PRIMARY KEY,
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account uuid NOT NULL,
    chat_id varchar(64) NOT NULL,
    tag varchar(120) NOT NULL,
    from_at timestamptz NOT NULL,
    to_at timestamptz,
    FOREIGN KEY (account, chat_id) REFERENCES chatguru_chats (account, chat_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX chatguru_chat_tags_current_key
    ON chatguru_chat_tags (account, chat_id, tag) WHERE to_at IS NULL;
CREATE INDEX chatguru_chat_tags_tag_idx ON chatguru_chat_tags (tenant, tag);

CREATE TABLE chatguru_chat_funnel_steps (
    id bigserial PRIMARY KEY,
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account uuid NOT NULL,
    chat_id varchar(64) NOT NULL,
    step varchar(120) NOT NULL,
    from_at timestamptz NOT NULL,
    to_at timestamptz,
    FOREIGN KEY (account, chat_id) REFERENCES chatguru_chats (account, chat_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX chatguru_chat_funnel_steps_current_key
    ON chatguru_chat_funnel_steps (account, chat_id, step) WHERE to_at IS NULL;
CREATE INDEX chatguru_chat_funnel_steps_step_idx ON chatguru_chat_funnel_steps (tenant, step);

CREATE TABLE chatguru_notes (
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account uuid NOT NULL,
    chat_id varchar(64) NOT NULL,
    note_id varchar(64) NOT NULL,
    author varchar(200) NOT NULL DEFAULT '',
    text text NOT NULL DEFAULT '',
    at timestamptz NOT NULL,
    PRIMARY KEY (account, note_id),
    FOREIGN KEY (account, chat_id) REFERENCES chatguru_chats (account, chat_id) ON DELETE CASCADE
);

CREATE TABLE chatguru_catalog_jobs (
    id uuid PRIMARY KEY,
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account uuid NOT NULL REFERENCES chatguru_accounts (id) ON DELETE CASCADE,
    state varchar(20) NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    chats_total integer NOT NULL DEFAULT 0,
    chats_done integer NOT NULL DEFAULT 0,
    messages integer NOT NULL DEFAULT 0,
    inserted integer NOT NULL DEFAULT 0,
    duplicates integer NOT NULL DEFAULT 0,
    notes integer NOT NULL DEFAULT 0,
    odd integer NOT NULL DEFAULT 0,
    errors integer NOT NULL DEFAULT 0,
    error text,
    error_code varchar(40),
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    heartbeat_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX chatguru_catalog_jobs_account_idx
    ON chatguru_catalog_jobs (tenant, account, created_at DESC);
CREATE UNIQUE INDEX chatguru_catalog_jobs_active_key ON chatguru_catalog_jobs (account)
    WHERE state IN ('queued', 'running');
"""

DROP = """
DROP TABLE IF EXISTS chatguru_catalog_jobs, chatguru_notes, chatguru_chat_funnel_steps,
    chatguru_chat_tags, chatguru_delegations, chatguru_chats, chatguru_agents,
    chatguru_phones, chatguru_accounts;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP, app_name="chatguru")
