"""Conversation lists ordered by latest activity, read page by page.

`GET /api/v1/conversations` orders by (coalesce(last_message_at, created_at), id)
descending within a tenant and pages with a keyset on the same pair; this index serves
both, so a page costs the same at the top of the list and deep inside it.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-23T22:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "conversations: index on (tenant, latest activity, id)"

SCHEMA = """
CREATE INDEX conversations_tenant_activity_idx
    ON conversations (tenant, (coalesce(last_message_at, created_at)) DESC, id DESC);
"""

DROP = """
DROP INDEX IF EXISTS conversations_tenant_activity_idx;
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
