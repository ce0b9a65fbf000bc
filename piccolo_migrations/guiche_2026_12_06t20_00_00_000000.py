"""`guiche_settle_sent_many()`: a group of successful sends settled in one statement.

A worker sending hundreds of messages a second settled each with its own call of
`guiche_settle_sent` (one round trip and one commit per send). This function takes the
group's arguments as parallel arrays and calls `guiche_settle_sent` for each, in the
order given (the caller sorts by the key's lock name, so two groups that share keys
wait for each other instead of deadlocking), and returns one row per message with the
same `outcome`, `seq` and `created_at` (`slow` and `skipped` change nothing of that
message, as before: the caller takes its full path for it alone).

One statement is one transaction: if any call raises, none of the group is settled and
the caller settles its messages one by one, so one message's error stays its own.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-06T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "guiche_settle_sent_many(): a group of successful sends settled in one statement"

SCHEMA = """
CREATE FUNCTION guiche_settle_sent_many(
    p_message uuid[], p_created_at timestamptz[], p_status varchar[], p_pid varchar[],
    p_channel uuid[], p_tenant uuid[], p_lock text[], p_conversation uuid[],
    p_department uuid[], p_assignee uuid[], p_event text[])
RETURNS TABLE (message uuid, outcome text, seq bigint, created_at timestamptz)
LANGUAGE plpgsql
AS $fn$
BEGIN
FOR i IN 1 .. coalesce(array_length(p_message, 1), 0) LOOP
    RETURN QUERY
    SELECT p_message[i], s.outcome, s.seq, s.created_at
    FROM guiche_settle_sent(
        p_message[i], p_created_at[i], p_status[i], p_pid[i], p_channel[i], p_tenant[i],
        p_lock[i], p_conversation[i], p_department[i], p_assignee[i], p_event[i]) s;
END LOOP;
END
$fn$;
"""

DROP = """
DROP FUNCTION IF EXISTS guiche_settle_sent_many(
    uuid[], timestamptz[], varchar[], varchar[], uuid[], uuid[], text[], uuid[], uuid[],
    uuid[], text[]);
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
