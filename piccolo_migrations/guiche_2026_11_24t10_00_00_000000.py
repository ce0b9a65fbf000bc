"""`guiche_settle_sent()`: a successful send settled in one statement, in the common case.

Settling a send used to cost 7 round trips (BEGIN, mark sent and drop the outbox row,
the key's advisory lock, claim the key, take parked statuses, record the event, COMMIT);
on a 2-CPU host a worker's throughput is inversely proportional to its round trips.
This function does all of it as one statement when nothing raced the send, and
changes *nothing* when something did, so the caller can run the full Python path
(`guiche.inbound.early_statuses.record_sent_key`) in one transaction of its own:

- `slow`: statuses are parked for the provider id, or its key is already held (an
  echo of this send to merge, or another message's id). Checked after the key's
  advisory lock, which ingest also takes before parking, so a status is either seen
  parked here or, once this commits, finds the key;
- `skipped`: the message is no longer pending (settled by another worker after an
  expired lease); the outbox row is dropped and the key claim undone, as before;
- `sent`: marked sent, outbox row gone, key claimed, `message.status` event recorded
  (its `data` built by the caller, as `record_events` would store it).

The key is claimed before the message is marked, so `slow` never has to undo a write:
an echo that claims the key between the check and the insert (ingest stores echoes
without the advisory lock) makes the insert claim nothing, which is `slow` as well.

A function, like `guiche_ingest_messages`, so its statements' plans are cached per
session and kept generic whatever the pool's `plan_cache_mode`; being VOLATILE, each
statement in it sees what other transactions committed before it started (the parked
statuses committed while we waited for the lock).
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-11-24T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "guiche_settle_sent(): a successful send settled in one statement"

SCHEMA = """
CREATE FUNCTION guiche_settle_sent(
    p_message uuid, p_created_at timestamptz, p_status varchar, p_pid varchar,
    p_channel uuid, p_tenant uuid, p_lock text, p_conversation uuid, p_department uuid,
    p_assignee uuid, p_event text)
RETURNS TABLE (outcome text, seq bigint, created_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
BEGIN
PERFORM pg_advisory_xact_lock(hashtextextended(p_lock, 0));
IF EXISTS (SELECT 1 FROM early_statuses e
           WHERE e.channel = p_channel AND e.provider_message_id = p_pid) THEN
    RETURN QUERY SELECT 'slow'::text, NULL::bigint, NULL::timestamptz;
    RETURN;
END IF;
INSERT INTO message_keys (channel, provider_message_id, tenant, message_id, message_created_at)
VALUES (p_channel, p_pid, p_tenant, p_message, p_created_at)
ON CONFLICT (channel, provider_message_id) DO NOTHING;
IF NOT FOUND THEN
    RETURN QUERY SELECT 'slow'::text, NULL::bigint, NULL::timestamptz;
    RETURN;
END IF;
WITH settled AS (DELETE FROM message_outbox o WHERE o.message_id = p_message)
UPDATE messages m
SET status = p_status, provider_message_id = p_pid, error = NULL, updated_at = now()
WHERE m.id = p_message AND m.created_at = p_created_at AND m.status = 'pending';
IF NOT FOUND THEN
    DELETE FROM message_keys k WHERE k.channel = p_channel AND k.provider_message_id = p_pid;
    RETURN QUERY SELECT 'skipped'::text, NULL::bigint, NULL::timestamptz;
    RETURN;
END IF;
RETURN QUERY
INSERT INTO events AS e (tenant, type, conversation, department, assignee, data)
VALUES (p_tenant, 'message.status', p_conversation, p_department, p_assignee, p_event::jsonb)
RETURNING 'sent'::text, e.seq, e.created_at;
END
$fn$;
"""

DROP = """
DROP FUNCTION IF EXISTS guiche_settle_sent(
    uuid, timestamptz, varchar, varchar, uuid, uuid, text, uuid, uuid, uuid, text);
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
