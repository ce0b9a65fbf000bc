"""One `provider_usage` row per provider message and channel.

Providers repeat the pricing block on several statuses of one message (Meta sends it on
`sent` and `delivered`) and redeliver whole webhooks for days, so usage is recorded
with `ON CONFLICT DO NOTHING` on this key; without it every redelivery would be billed
again in the cost dashboards.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

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


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="guiche", description=DESCRIPTION)

    async def create() -> None:
        await engine_finder().current_transaction.get().connection.execute(SCHEMA)

    async def drop() -> None:
        await engine_finder().current_transaction.get().connection.execute(DROP)

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
