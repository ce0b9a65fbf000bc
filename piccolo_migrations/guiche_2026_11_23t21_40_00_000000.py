"""One `provider_usage` row per provider message and channel.

Providers repeat the pricing block on several statuses of one message (Meta sends it on
`sent` and `delivered`) and redeliver whole webhooks for days, so usage is recorded
with `ON CONFLICT DO NOTHING` on this key; without it every redelivery would be billed
again in the cost dashboards.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-11-23T21:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "provider_usage: unique (channel, provider_message_id)"

SCHEMA = """
DELETE FROM provider_usage a USING provider_usage b
WHERE a.channel = b.channel AND a.provider_message_id = b.provider_message_id
  AND (a.created_at, a.id) > (b.created_at, b.id);
CREATE UNIQUE INDEX provider_usage_channel_message_key
    ON provider_usage (channel, provider_message_id);
"""

DROP = """
DROP INDEX IF EXISTS provider_usage_channel_message_key;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
