"""Conversations by contact and channel, closed ones included.

Sending to a contact (`guiche.outbound.direct_send`, `guiche.conversations.start`) looks
for its latest conversation on the channel and its last inbound time, closed
conversations included; the only index on (contact, channel) was the partial one for open
conversations, so each send scanned every conversation: a 100,000-target campaign, which
leaves one closed conversation per target, slowed from ~115 to ~50 sends/s as it ran.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-06T20:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "conversations by contact and channel (sends to a contact, closed included)"

SCHEMA = """
CREATE INDEX conversations_contact_channel_idx
    ON conversations (contact, channel, created_at DESC);
"""

DROP = """
DROP INDEX IF EXISTS conversations_contact_channel_idx;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
