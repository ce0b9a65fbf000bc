"""`users.token_version`: the session version every access token carries (`ver`).

Access tokens are checked without a session row, so until now nothing could end them
before they expired. A password change, "log out everywhere" or a seat's deactivation
bumps the version; tokens carrying an older one are refused at once (`guiche.auth.access`).
Tokens issued before this migration carry no `ver` and count as version 0.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-05T10:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "users.token_version: ending every session of a person at once"

SCHEMA = """
ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0;
"""

DROP = """
ALTER TABLE users DROP COLUMN IF EXISTS token_version;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
