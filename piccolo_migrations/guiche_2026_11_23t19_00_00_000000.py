"""Conversations engine: durable event sequence, idempotency keys, stored media, assignment time.

`events` gives every real-time event a sequence so a client that missed pub/sub
(at-most-once) resyncs with `GET /api/v1/events?after=<seq>`.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-11-23T19:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Events, idempotency keys, media files"

SCHEMA = """
CREATE TABLE events (
    seq bigserial PRIMARY KEY,
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    type varchar(40) NOT NULL,
    conversation uuid,
    department uuid,
    assignee uuid,
    data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_tenant_seq_idx ON events (tenant, seq);

CREATE TABLE idempotency_keys (
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key varchar(200) NOT NULL,
    request_hash varchar(64) NOT NULL,
    status integer NOT NULL DEFAULT 0,
    response jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key)
);

CREATE TABLE media_files (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    storage_key text NOT NULL,
    mime_type varchar(120) NOT NULL DEFAULT 'application/octet-stream',
    size bigint NOT NULL DEFAULT 0,
    filename varchar(255),
    sha256 varchar(64),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_files_tenant_idx ON media_files (tenant, created_at);

ALTER TABLE conversations ADD COLUMN assigned_at timestamptz;
ALTER TABLE conversations ADD COLUMN queued_at timestamptz;
CREATE INDEX conversations_queue_idx ON conversations (tenant, department, queued_at)
    WHERE status = 'PENDING' AND assignee IS NULL;
CREATE INDEX messages_pending_idx ON messages (created_at) WHERE status = 'pending';
"""

DROP = """
DROP INDEX IF EXISTS messages_pending_idx;
ALTER TABLE conversations DROP COLUMN IF EXISTS assigned_at, DROP COLUMN IF EXISTS queued_at;
DROP TABLE IF EXISTS media_files, idempotency_keys, events;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
