"""Chat ↔ conversation: which Guichê conversation a ChatGuru chat's messages landed in.

Core decides the conversation (the contact's latest on the channel, or a new closed one
for history); the plugin reads it back once per chat through the public
`messages_by_phone` and keeps it on `chatguru_chats.conversation`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from guiche.channels import ChatKind
from guiche.plugin import ApiError, messages_by_phone
from guiche_chatguru import store
from guiche_chatguru.parse import ChatRecord

CHANNEL_TYPE = "chatguru"


async def map_conversations(
    tenant_id: uuid.UUID, account_id: uuid.UUID, chats: Iterable[ChatRecord], done: set[str]
) -> None:
    """Fill the conversation of each direct chat not mapped yet (`done` remembers the
    chats this caller already mapped)."""
    for chat in {chat.id: chat for chat in chats}.values():
        if chat.id in done or chat.kind is not ChatKind.DIRECT:
            continue
        rows = await store.raw(
            "SELECT conversation FROM chatguru_chats WHERE account = {} AND chat_id = {}",
            account_id,
            chat.id,
        )
        if rows and rows[0]["conversation"] is not None:
            done.add(chat.id)
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
