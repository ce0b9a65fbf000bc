"""`contacts.chat_kind`: a contact is a person (`direct`), or a group or broadcast
channel that a channel plugin reports as the chat of its messages (`channels.Chat`).

Replies address the chat by its kind (`Recipient.chat_kind`); every existing contact is
a person.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-05T15:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "contacts.chat_kind: people, groups and channels"

SCHEMA = """
ALTER TABLE contacts ADD COLUMN chat_kind varchar(10) NOT NULL DEFAULT 'direct'
    CHECK (chat_kind IN ('direct', 'group', 'channel'));
"""

DROP = """
ALTER TABLE contacts DROP COLUMN IF EXISTS chat_kind;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
