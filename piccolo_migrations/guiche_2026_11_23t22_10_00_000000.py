"""Conversation lists ordered by latest activity, read page by page.

`GET /api/v1/conversations` orders by (coalesce(last_message_at, created_at), id)
descending within a tenant and pages with a keyset on the same pair; this index serves
both, so a page costs the same at the top of the list and deep inside it.
"""

from guiche.database.sql_migration import sql_migration

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


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
