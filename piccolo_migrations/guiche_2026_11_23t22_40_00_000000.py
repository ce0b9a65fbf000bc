"""Statuses that arrive before our own send commits its provider id.

A provider may post delivered/read/failed for a message before the send call returns
to the worker, so `message_keys` has no row for it yet. Ingest parks such statuses
here; the sender applies them when it records the key, and the rest (ids that were
never ours) are purged after a day by `core.purge_early_statuses`.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-11-23T22:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "early_statuses: statuses parked until our send records its provider id"

SCHEMA = """
CREATE TABLE early_statuses (
    channel uuid NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    provider_message_id varchar(200) NOT NULL,
    status varchar(10) NOT NULL,
    error jsonb,
    timestamp timestamptz NOT NULL,
    pricing jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, provider_message_id, status)
);
CREATE INDEX early_statuses_created_idx ON early_statuses (created_at);
"""

DROP = """
DROP TABLE IF EXISTS early_statuses;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
