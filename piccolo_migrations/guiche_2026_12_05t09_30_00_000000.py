"""Message search: a trigram index on `messages.body` (when pg_trgm is available).

`GET /api/v1/messages/search?q=` is a case-insensitive substring match
(`body ILIKE '%q%'`), which a `gin_trgm_ops` index answers for any language, any
word fragment, order numbers and phone digits alike; a tsvector would need a language
and would not find fragments. Like the contacts' name index, the extension is
optional: without it the search still works, by scanning. On TimescaleDB the index is
created on every chunk of the hypertable; compressed chunks (older than 30 days) keep
no GIN index, so searching them scans their tenant's segments (docs/architecture.md).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from guiche.database.sql_migration import execute_in_migration, try_in_migration

ID = "2026-12-05T09:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "messages: trigram index on body for search (optional pg_trgm)"

INDEX = "CREATE INDEX messages_body_trgm_idx ON messages USING gin (body gin_trgm_ops)"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="guiche", description=DESCRIPTION)

    async def create_index() -> None:
        if await try_in_migration("CREATE EXTENSION IF NOT EXISTS pg_trgm"):
            await execute_in_migration(INDEX)

    async def drop_index() -> None:
        await execute_in_migration("DROP INDEX IF EXISTS messages_body_trgm_idx")

    manager.add_raw(create_index)
    manager.add_raw_backwards(drop_index)
    return manager
