"""The outbound outbox: one row per outbound message still to be sent.

A separate small table rather than columns on `messages`: the send state (attempts,
next attempt, the worker's lease) is hot, short-lived and scanned by the sweeper,
while `messages` is the large, time-partitioned (possibly compressed) history. The row
is written in the transaction that stores the message and deleted in the one that
records `sent`/`failed`, so "in the outbox" means exactly "not settled yet".
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-11-23T20:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Outbound message outbox"

SCHEMA = """
CREATE TABLE message_outbox (
    message_id uuid PRIMARY KEY,
    message_created_at timestamptz NOT NULL,
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    lock_token uuid,
    last_error jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_outbox_due_idx ON message_outbox (next_attempt_at);
"""

DROP = """
DROP TABLE IF EXISTS message_outbox;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
