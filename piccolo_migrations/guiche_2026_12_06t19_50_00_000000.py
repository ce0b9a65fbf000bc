"""Where an outbound message came from (`origin`, an opaque tag a plugin gives
`guiche.plugin.send_message`, e.g. `campaign:<id>`), carried onto the provider's usage
rows for that message so cost can be totalled per origin (`usage_totals`).

Both columns are nullable without a default: adding them rewrites no rows (also on a
TimescaleDB hypertable). Reading per origin filters on the partial index.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-06T19:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "messages.origin and provider_usage.origin (cost per campaign)"

SCHEMA = """
ALTER TABLE messages ADD COLUMN origin varchar(200);
ALTER TABLE provider_usage ADD COLUMN origin varchar(200);
CREATE INDEX provider_usage_origin_idx ON provider_usage (tenant, origin, created_at)
    WHERE origin IS NOT NULL;
"""

DROP = """
DROP INDEX IF EXISTS provider_usage_origin_idx;
ALTER TABLE provider_usage DROP COLUMN IF EXISTS origin;
ALTER TABLE messages DROP COLUMN IF EXISTS origin;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
