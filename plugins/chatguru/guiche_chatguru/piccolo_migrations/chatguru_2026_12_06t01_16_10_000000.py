"""`chatguru_chats.conversation`: the Guichê conversation a ChatGuru chat's messages
landed in (filled once the chat's first messages are stored), so a chat and its thread
in the inbox can be found from each other.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

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


async def _execute(sql: str) -> None:
    await engine_finder().current_transaction.get().connection.execute(sql)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="chatguru", description=DESCRIPTION)

    async def apply() -> None:
        await _execute(SCHEMA)

    async def revert() -> None:
        await _execute(DROP)

    manager.add_raw(apply)
    manager.add_raw_backwards(revert)
    return manager
