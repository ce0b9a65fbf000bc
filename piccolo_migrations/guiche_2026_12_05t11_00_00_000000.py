"""Message ids carry their time: `guiche_message_id(at)`, used by webhook ingest.

On a hypertable a lookup by message id alone probes every chunk (and decompresses the
compressed ones), so new message ids are UUIDv7 stamped with the message's `created_at`
(`guiche.foundation.message_ids`); lookups add the millisecond the id names and touch one chunk.
`guiche_ingest_messages` is the 2026-11-24T09:00 function with its message ids from
`guiche_message_id(i.at)` instead of `gen_random_uuid()`; nothing else in it changes.
Existing ids stay as they are (they carry no time and are looked up by id alone).
"""

from guiche.database.sql_migration import sql_migration
from guiche.foundation.message_ids import SQL_FUNCTION
from guiche.piccolo_migrations import guiche_2026_11_24t09_00_00_000000 as ingest

ID = "2026-12-05T11:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "message ids carry their time (UUIDv7 of created_at), for one-chunk id lookups"

_RANDOM = "SELECT p_channel, i.pid, p_tenant, gen_random_uuid(), i.at FROM input i"
_STAMPED = "SELECT p_channel, i.pid, p_tenant, guiche_message_id(i.at), i.at FROM input i"
if ingest.SCHEMA.count(_RANDOM) != 1:
    raise RuntimeError("guiche_ingest_messages no longer claims its keys as expected")
_ORIGINAL = ingest.SCHEMA.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)

SCHEMA = SQL_FUNCTION + _ORIGINAL.replace(_RANDOM, _STAMPED)

DROP = _ORIGINAL + "DROP FUNCTION IF EXISTS guiche_message_id(timestamptz);"


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
