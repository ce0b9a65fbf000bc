"""Indexes for reading conversation histories (`guiche.conversations.timeline`): a
company's closed conversations in closing order, and one conversation's events.

Reports (the `reports` plugin) catch up on closes by `(tenant, closed_at, id)` and
rebuild a conversation's timeline from its events; without these both scan the
company's rows.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-06T00:18:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "conversations by closing time, events by conversation (timelines)"

SCHEMA = """
CREATE INDEX conversations_closed_idx ON conversations (tenant, closed_at, id)
    WHERE status = 'CLOSED';
CREATE INDEX events_conversation_idx ON events (conversation, seq)
    WHERE conversation IS NOT NULL;
"""

DROP = """
DROP INDEX IF EXISTS conversations_closed_idx;
DROP INDEX IF EXISTS events_conversation_idx;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
