"""`provider_calls`: the per-channel log of calls to providers (guiche.outbound.call_log).

Written in batches by each process, read newest first per channel by admins, and
trimmed by `core.purge_provider_calls` after `provider_call_retention_days`.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-05T15:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "provider_calls: a log of every provider call per channel"

SCHEMA = """
CREATE TABLE provider_calls (
    id bigserial PRIMARY KEY,
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    operation varchar(60) NOT NULL,
    method varchar(10) NOT NULL,
    target text NOT NULL,
    status integer,
    latency_ms double precision NOT NULL,
    error text
);
CREATE INDEX provider_calls_channel_recent
    ON provider_calls (tenant, channel, created_at DESC, id DESC);
CREATE INDEX provider_calls_created_at ON provider_calls (created_at);
"""

DROP = """
DROP TABLE IF EXISTS provider_calls;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
