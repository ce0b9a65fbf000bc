"""`messages` on TimescaleDB: no foreign keys, no time index, compressed per conversation.

Only where `messages` is a hypertable; on plain PostgreSQL this changes nothing.

- **No foreign keys on the hypertable.** The first row of a new chunk clones the
  table's foreign keys onto the chunk, which takes a SHARE ROW EXCLUSIVE lock on every
  referenced table while the chunk's creation holds the hypertable's. A concurrent
  ingest that had upserted a contact (ROW EXCLUSIVE on `contacts`) and then inserted a
  message of the same week waited for the chunk: a deadlock at every new week (HTTP
  500). Without foreign keys a chunk's creation locks nothing but `messages`. Their
  `ON DELETE` actions are kept by statement-level triggers on the parents, so deleting a
  tenant, conversation, contact, channel or user does to messages what it did before.
  What is lost is the insert-time check that the parents exist; every writer takes them
  from rows it has just read or written in the same transaction.
- **No `messages_created_at_idx`** (the default index of `create_hypertable`, on
  databases created before the 2026-12-05 change of the first migration): for a long
  conversation whose activity stopped, the planner walked it in time order and
  filtered, 10x slower than `messages_conversation_idx`.
- **Compression segmented by conversation, ordered like a page** (`created_at DESC,
  id DESC`): a page of an old conversation decompresses only that conversation's
  batches, in the order it reads them (bench/README.md, "TimescaleDB").
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

from guiche.database import timescale

ID = "2026-12-05T10:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "messages on TimescaleDB: no foreign keys, no time index, compressed per conversation"

# The parents' ON DELETE actions, as the dropped foreign keys had them.
DETACH = """
DROP INDEX IF EXISTS messages_created_at_idx;
ALTER TABLE messages
    DROP CONSTRAINT IF EXISTS messages_tenant_fkey,
    DROP CONSTRAINT IF EXISTS messages_conversation_fkey,
    DROP CONSTRAINT IF EXISTS messages_contact_fkey,
    DROP CONSTRAINT IF EXISTS messages_channel_fkey,
    DROP CONSTRAINT IF EXISTS messages_sender_fkey;

CREATE FUNCTION guiche_messages_parent_deleted() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_TABLE_NAME = 'tenants' THEN
        DELETE FROM messages m USING gone g WHERE m.tenant = g.id;
    ELSIF TG_TABLE_NAME = 'conversations' THEN
        DELETE FROM messages m USING gone g WHERE m.conversation = g.id;
    ELSIF TG_TABLE_NAME = 'contacts' THEN
        UPDATE messages m SET contact = NULL FROM gone g
        WHERE m.tenant = g.tenant AND m.contact = g.id;
    ELSIF TG_TABLE_NAME = 'channels' THEN
        UPDATE messages m SET channel = NULL FROM gone g
        WHERE m.tenant = g.tenant AND m.channel = g.id;
    ELSIF TG_TABLE_NAME = 'users' THEN
        UPDATE messages m SET sender = NULL FROM gone g WHERE m.sender = g.id;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER messages_tenant_deleted AFTER DELETE ON tenants
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION guiche_messages_parent_deleted();
CREATE TRIGGER messages_conversation_deleted AFTER DELETE ON conversations
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION guiche_messages_parent_deleted();
CREATE TRIGGER messages_contact_deleted AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION guiche_messages_parent_deleted();
CREATE TRIGGER messages_channel_deleted AFTER DELETE ON channels
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION guiche_messages_parent_deleted();
CREATE TRIGGER messages_user_deleted AFTER DELETE ON users
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION guiche_messages_parent_deleted();
"""

COMPRESSION = """
ALTER TABLE messages SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'conversation',
    timescaledb.compress_orderby = 'created_at DESC, id DESC');
SELECT add_compression_policy('messages', interval '30 days', if_not_exists => true);
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="guiche", description=DESCRIPTION)

    async def apply() -> None:
        conn = engine_finder().current_transaction.get().connection
        if not await timescale.is_hypertable(conn):
            return
        await conn.execute(DETACH)
        await timescale.apply_optional(
            conn,
            "compression (segment by conversation, order by created_at DESC, id DESC; "
            "policy after 30 days)",
            COMPRESSION,
        )

    manager.add_raw(apply)
    return manager
