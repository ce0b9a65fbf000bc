"""`message_keys.claimed_at`: when a provider id was claimed, so old keys can be pruned.

`message_keys` gets a row per message with a provider id; kept forever it grows like
`messages` itself. Keys only have to outlive the providers' redelivery horizon (Meta
retries for up to 7 days), so `core.purge_message_keys` deletes those claimed more
than `GUICHE_MESSAGE_KEYS_RETENTION_DAYS` ago (guiche.inbound.key_retention). The
claim time, not the message's own time: an imported history's messages are old the
day they are claimed, and re-running the import must still find them.

`DEFAULT now()` fills the rows already there with the migration's time (no table
rewrite) and every writer's INSERT with its transaction's; a BRIN index serves the
purge's range scan at almost no cost to those inserts (keys arrive in time order).
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-05T09:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "message_keys.claimed_at, for pruning keys past the redelivery horizon"

SCHEMA = """
ALTER TABLE message_keys ADD COLUMN claimed_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX message_keys_claimed_at_idx ON message_keys USING brin (claimed_at);
"""

DROP = """
DROP INDEX IF EXISTS message_keys_claimed_at_idx;
ALTER TABLE message_keys DROP COLUMN IF EXISTS claimed_at;
"""

forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
