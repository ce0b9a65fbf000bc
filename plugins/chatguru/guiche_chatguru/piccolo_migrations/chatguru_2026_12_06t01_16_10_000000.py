"""`chatguru_chats.conversation`: the Guichê conversation a ChatGuru chat's messages
landed in (filled once the chat's first messages are stored), so a chat and its thread
in the inbox can be found from each other.
"""

from guiche.plugin import sql_migration

ID = "2026-12-06T01:16:10:000000"
VERSION = "1.0.0"
DESCRIPTION = "chatguru: chat to conversation mapping"

SCHEMA = """
ALTER TABLE chatguru_chats
    ADD COLUMN conversation uuid REFERENCES conversations (id) ON DELETE SET NULL;
CREATE INDEX chatguru_chats_conversation_idx ON chatguru_chats (conversation)
    WHERE conversation IS NOT NULL;
"""

DROP = """
ALTER TABLE chatguru_chats DROP COLUMN IF EXISTS conversation;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP, app_name="chatguru")
