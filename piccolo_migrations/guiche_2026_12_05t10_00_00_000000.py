"""Read markers: how far each person has read each conversation.

One row per (conversation, user), moved forward by `POST /conversations/{id}/read`.
A conversation is unread for someone when its `last_inbound_at` is after their marker
(no join into `messages`), which keeps the per-category counts a scan of conversations;
the per-conversation count looks at that conversation's inbound messages after the
marker, capped, through `messages_conversation_idx`.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-05T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "conversation_reads: per-person read markers"

SCHEMA = """
CREATE TABLE conversation_reads (
    conversation uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    "user" uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    last_read_at timestamptz NOT NULL,
    PRIMARY KEY (conversation, "user")
);
CREATE INDEX conversation_reads_user_idx ON conversation_reads (tenant, "user");
"""

DROP = "DROP TABLE IF EXISTS conversation_reads;"


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
