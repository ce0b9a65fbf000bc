"""Notes a plugin brings from another system (`guiche.conversations.imported_notes`):
who wrote them there (a name, not one of our users) and a key that makes the import
idempotent per company.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-06T04:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "notes: author_name and source_key, for notes imported by plugins"

SCHEMA = """
ALTER TABLE notes ADD COLUMN author_name varchar(200);
ALTER TABLE notes ADD COLUMN source_key varchar(300);
CREATE UNIQUE INDEX notes_source_key_idx ON notes (tenant, source_key)
    WHERE source_key IS NOT NULL;
"""

DROP = """
DROP INDEX IF EXISTS notes_source_key_idx;
ALTER TABLE notes DROP COLUMN IF EXISTS source_key;
ALTER TABLE notes DROP COLUMN IF EXISTS author_name;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
