"""Provider identities: one active channel per provider account, platform-wide.

`channels.provider_identity` is the provider account a channel holds (Meta's
phone_number_id, an Evolution server's instance, whatever a plugin declares through
`ChannelAdapter.provider_identity`). The partial unique index makes "one active holder
per identity and channel type" a database rule, so two concurrent claims cannot both
win. A deactivated channel keeps the value (it knows what to re-claim) but holds
nothing. Rows created before this migration get theirs when app-level routing first
meets them (`guiche.channel_host.claims`), since credentials are encrypted.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-05T10:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "channels.provider_identity: one active channel per provider identity"

SCHEMA = """
ALTER TABLE channels ADD COLUMN provider_identity text;
CREATE UNIQUE INDEX channels_provider_identity_key ON channels (type, provider_identity)
    WHERE is_active AND provider_identity IS NOT NULL;
"""

DROP = """
DROP INDEX IF EXISTS channels_provider_identity_key;
ALTER TABLE channels DROP COLUMN IF EXISTS provider_identity;
"""

forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
