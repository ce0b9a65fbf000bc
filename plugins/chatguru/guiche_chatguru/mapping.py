"""Chat ↔ conversation: which Guichê conversation a ChatGuru chat's messages landed in.

Core decides the conversation (the contact's latest on the channel, or a new closed one
for history); the plugin reads it back once per chat through the public
`messages_by_phone` and keeps it on `chatguru_chats.conversation`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from guiche.channels import ChatKind
from guiche.plugin import ApiError, ImportedNote, add_notes, messages_by_phone
from guiche_chatguru import store
from guiche_chatguru.parse import ChatRecord

CHANNEL_TYPE = "chatguru"


async def map_conversations(
    tenant_id: uuid.UUID, account_id: uuid.UUID, chats: Iterable[ChatRecord], done: set[str]
) -> None:
    """Fill the conversation of each direct chat not mapped yet (`done` remembers the
    chats this caller already mapped)."""
    wanted = {
        chat.id: chat
        for chat in chats
        if chat.id not in done and chat.kind is ChatKind.DIRECT
    }
    if not wanted:
        return
    mapped = await store.raw(  # one query for all: most chats are mapped already
        "SELECT chat_id FROM chatguru_chats WHERE account = {} "
        "AND chat_id = ANY({}::varchar[]) AND conversation IS NOT NULL",
        account_id,
        sorted(wanted),
    )
    done.update(row["chat_id"] for row in mapped)
    for chat in wanted.values():
        if chat.id in done:
            continue
        try:
            page = await messages_by_phone(
                tenant_id, chat.number, limit=20, channel_type=CHANNEL_TYPE
            )
        except ApiError:  # no phone in the address: nothing to map by
            done.add(chat.id)
            continue
        conversation = next(
            (item["conversation_id"] for item in page["items"] if item["channel_id"] == account_id),
            None,
        )
        if conversation is not None:
            await store.raw(
                "UPDATE chatguru_chats SET conversation = {} WHERE account = {} AND chat_id = {}",
                conversation,
                account_id,
                chat.id,
            )
            done.add(chat.id)


async def copy_notes(
    services: Any, tenant_id: uuid.UUID, account_id: uuid.UUID, chat_ids: Iterable[str]
) -> int:
    """The panel's notes of these chats as core notes on their chat's conversation (agents
    see them in the conversation), through the public `add_notes`, read from
    `chatguru_notes` (so notes met before the chat's conversation was known come along
    later). Keyed by the account and ChatGuru's note id: a re-run or a poll adds none
    twice. A chat with no conversation yet (no message) keeps its notes in
    `chatguru_notes` only. Returns how many were added."""
    wanted = sorted(set(chat_ids))
    if not wanted:
        return 0
    rows = await store.raw(
        "SELECT n.note_id, n.author, n.text, n.at, c.conversation FROM chatguru_notes n "
        "JOIN chatguru_chats c ON c.account = n.account AND c.chat_id = n.chat_id "
        "WHERE n.account = {} AND n.tenant = {} AND n.chat_id = ANY({}) "
        "AND c.conversation IS NOT NULL AND n.text <> ''",
        account_id,
        tenant_id,
        wanted,
    )
    notes = [
        ImportedNote(
            key=f"chatguru:{account_id}:{row['note_id']}",
            body=row["text"],
            created_at=row["at"],
            author_name=f"{row['author']} (ChatGuru)" if row["author"] else "ChatGuru",
            conversation_id=row["conversation"],
        )
        for row in rows
    ]
    return await add_notes(services, tenant_id, notes)
