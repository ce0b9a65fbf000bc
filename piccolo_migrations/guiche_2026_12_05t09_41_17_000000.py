"""`message_outbox.released_attempts`: which claims ended without a provider call in doubt.

Every claim (`attempts + 1`) is the durable record that a provider call is about to
start: the sender does no provider I/O between the claim and the call. A claim that
ends cleanly either settles the row (deletes it) or releases it for a retry, setting
`released_attempts = attempts`. So a new claim that finds `attempts - 1 >
released_attempts` knows an earlier holder died (or lost the database) between its
claim and its settle: the provider may have accepted that send. The sender then asks
the provider (`lookup_sent`), trusts its idempotency, or marks the message `unknown`
instead of sending it twice (see `guiche.outbound.sender`).

A counter rather than a flag, because an UPDATE's RETURNING sees only new values: the
claim can bump `attempts` and still compare it with the untouched `released_attempts`
in the same statement, so the send path keeps its two statements.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-05T09:41:17:000000"
VERSION = "1.38.0"
DESCRIPTION = "message_outbox.released_attempts: claims that left no provider call in doubt"

SCHEMA = """
ALTER TABLE message_outbox ADD COLUMN released_attempts integer NOT NULL DEFAULT 0;
UPDATE message_outbox SET released_attempts = attempts WHERE locked_until IS NULL;
"""

DROP = """
ALTER TABLE message_outbox DROP COLUMN IF EXISTS released_attempts;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
