"""Reads and writes of the plugin's own tables (always filtered by tenant).

Chats are upserted from the chat list; their delegations, tags and funnel steps keep a
history: a value that appears opens a row (`from_at`), one that disappears closes it
(`to_at`), so "who held this chat, and when" survives the panel forgetting it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from guiche.plugin import NotFound
from guiche_chatguru.parse import ChatRecord, Note
from guiche_chatguru.tables import ChatGuruAccount

_db = ChatGuruAccount


async def raw(sql: str, *args: Any) -> list[dict[str, Any]]:
    return await _db.raw(sql, *args)


def transaction() -> Any:
    return _db._meta.db.transaction()


async def ensure_account(tenant_id: uuid.UUID, channel_id: uuid.UUID) -> None:
    """The account row of the company's ChatGuru channel (callers have checked the channel
    is the company's; its foreign key to `channels (tenant, id)` refuses one that is not).
    An account row under another company is never answered for this one."""
    owner = await raw("SELECT tenant FROM chatguru_accounts WHERE id = {}", channel_id)
    if not owner:
        await raw(  # only under the channel's own company (what its foreign key says)
            "INSERT INTO chatguru_accounts (id, tenant) SELECT {}, {} WHERE EXISTS ("
            "SELECT 1 FROM channels WHERE tenant = {} AND id = {}) ON CONFLICT (id) DO NOTHING",
            channel_id,
            tenant_id,
            tenant_id,
            channel_id,
        )
        owner = await raw("SELECT tenant FROM chatguru_accounts WHERE id = {}", channel_id)
    if not owner or owner[0]["tenant"] != tenant_id:
        raise NotFound("ChatGuru account not found", code="account_not_found")


async def account(tenant_id: uuid.UUID, channel_id: uuid.UUID) -> dict[str, Any] | None:
    rows = await raw(
        "SELECT * FROM chatguru_accounts WHERE tenant = {} AND id = {}", tenant_id, channel_id
    )
    return rows[0] if rows else None


#: ChatRecord attribute → the history table and its value column.
_HISTORY = {
    "agents": ("chatguru_delegations", "agent_id"),
    "tags": ("chatguru_chat_tags", "tag"),
    "funnel_steps": ("chatguru_chat_funnel_steps", "step"),
}


async def upsert_chats(
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    chats: Iterable[ChatRecord],
    now: dt.datetime,
    *,
    seen: bool = True,
) -> None:
    """Store chats (with their phones, agents and histories) in one transaction.

    A chat's `upstream_updated_at` is the chat list's `updated` its messages are stored
    up to; the poller reads a chat whose `updated` differs. So it moves here only where
    every message up to now will be read: with `seen` (the catalog's listing) for a chat
    the catalog has not finished, which it then reads to its oldest page. A finished
    chat, and every chat a poll lists (`seen` false: its read may fail), keeps the one
    it was last read at; a poll records it once the messages are in (`record_watermarks`)."""
    chats = list(chats)
    if not chats:
        return
    async with transaction():
        await raw(
            """
            INSERT INTO chatguru_chats AS c (tenant, account, chat_id, wa_chat_id, number, name,
                kind, phone_id, status, archived, upstream_updated_at, last_message_at)
            SELECT {}, {}, * FROM unnest({}::varchar[], {}::varchar[], {}::varchar[],
                {}::varchar[], {}::varchar[], {}::varchar[], {}::varchar[], {}::boolean[],
                {}::timestamptz[], {}::timestamptz[])
            ON CONFLICT (account, chat_id) DO UPDATE SET
                wa_chat_id = excluded.wa_chat_id, number = excluded.number,
                name = excluded.name, kind = excluded.kind, phone_id = excluded.phone_id,
                status = excluded.status, archived = excluded.archived,
                upstream_updated_at = CASE WHEN {} AND NOT c.catalog_done
                    THEN excluded.upstream_updated_at ELSE c.upstream_updated_at END,
                last_message_at = greatest(c.last_message_at, excluded.last_message_at),
                updated_at = now()
            """,
            tenant_id,
            account_id,
            [c.id for c in chats],
            [c.wa_chat_id for c in chats],
            [c.number[:120] for c in chats],
            [c.name for c in chats],
            [c.kind.value for c in chats],
            [c.phone_id for c in chats],
            [c.status for c in chats],
            [c.archived for c in chats],
            [c.updated_at if seen else None for c in chats],
            [c.last_message_at for c in chats],
            seen,
        )
        phones = sorted({c.phone_id for c in chats if c.phone_id})
        if phones:
            await raw(
                "INSERT INTO chatguru_phones (tenant, account, phone_id) "
                "SELECT {}, {}, unnest({}::varchar[]) ON CONFLICT DO NOTHING",
                tenant_id,
                account_id,
                phones,
            )
        agents = sorted({a for c in chats for a in c.agents})
        if agents:
            await raw(
                "INSERT INTO chatguru_agents (tenant, account, agent_id) "
                "SELECT {}, {}, unnest({}::varchar[]) ON CONFLICT DO NOTHING",
                tenant_id,
                account_id,
                agents,
            )
        ids = [chat.id for chat in chats]
        for key, (table, column) in _HISTORY.items():
            pairs = sorted({(c.id, value) for c in chats for value in getattr(c, key)})
            await _sync_history(table, column, tenant_id, account_id, ids, pairs, now)


async def _sync_history(
    table: str,
    column: str,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    chat_ids: list[str],
    current: list[tuple[str, str]],
    now: dt.datetime,
) -> None:
    """Close the open rows of these chats whose value is gone, open one per (chat, value)
    not open yet: two statements for all the chats, not two per chat."""
    chats = [chat_id for chat_id, _ in current]
    values = [value for _, value in current]
    await raw(
        f"UPDATE {table} t SET to_at = {{}} WHERE t.account = {{}} "
        f"AND t.chat_id = ANY({{}}::varchar[]) AND t.to_at IS NULL AND NOT EXISTS ("
        f"SELECT 1 FROM unnest({{}}::varchar[], {{}}::varchar[]) AS u(chat_id, value) "
        f"WHERE u.chat_id = t.chat_id AND u.value = t.{column})",
        now,
        account_id,
        chat_ids,
        chats,
        values,
    )
    if current:
        await raw(
            f"INSERT INTO {table} (tenant, account, chat_id, {column}, from_at) "
            f"SELECT {{}}, {{}}, u.chat_id, u.value, {{}} "
            f"FROM unnest({{}}::varchar[], {{}}::varchar[]) AS u(chat_id, value) "
            f"ON CONFLICT (account, chat_id, {column}) WHERE to_at IS NULL DO NOTHING",
            tenant_id,
            account_id,
            now,
            chats,
            values,
        )


_KNOWN = (
    "SELECT chat_id, upstream_updated_at, catalog_done, catalog_page, newest_message_id "
    "FROM chatguru_chats WHERE account = {}"
)


async def known_chats(
    account_id: uuid.UUID, chat_ids: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The account's stored chats (checkpoints, watermarks) by ChatGuru id: all of them,
    or only `chat_ids` (a poll reads the few chats the chat list showed it, not every
    chat of a large account each interval)."""
    if chat_ids is None:
        rows = await raw(_KNOWN, account_id)
    else:
        rows = await raw(_KNOWN + " AND chat_id = ANY({}::varchar[])", account_id, chat_ids)
    return {row["chat_id"]: row for row in rows}


@dataclass
class ChatProgress:
    """What one committed catalog batch (or poll) did to one chat: the last page whose
    messages are stored, whether the chat is finished, how many messages it added, its
    newest message, its notes and (once known) the conversation its messages are in."""

    chat_id: str
    page: int = 0
    done: bool = False
    added: int = 0
    newest_id: str | None = None
    newest_at: dt.datetime | None = None
    conversation: uuid.UUID | None = None
    notes: list[Note] = field(default_factory=list)
    #: (a poll) the chat list's `updated` this chat's messages are now stored up to
    seen: dt.datetime | None = None


#: Both bookkeeping statements (a catalog batch's, a poll's) open with the chats' notes,
#: unnested from five arrays (`_note_columns`), each stored once.
_NEW_NOTES = """
WITH new_notes AS (
    INSERT INTO chatguru_notes (tenant, account, chat_id, note_id, author, text, at)
    SELECT {}, {}, * FROM unnest({}::varchar[], {}::varchar[], {}::varchar[], {}::text[],
        {}::timestamptz[])
    ON CONFLICT (account, note_id) DO NOTHING
    RETURNING 1
)"""

#: A chat's watermark (its newest message stored) only moves forward in time, whichever
#: of the catalog and the poller writes last.
_WATERMARK_FORWARD = """
    newest_message_id = CASE WHEN u.newest_at IS NOT NULL AND (c.newest_message_at IS NULL
        OR c.newest_message_at <= u.newest_at) THEN u.newest_id ELSE c.newest_message_id END,
    newest_message_at = CASE WHEN u.newest_at IS NOT NULL AND (c.newest_message_at IS NULL
        OR c.newest_message_at <= u.newest_at) THEN u.newest_at ELSE c.newest_message_at END"""

_RECORD_BATCH = (
    _NEW_NOTES
    + """, chats AS (
    UPDATE chatguru_chats c SET
        catalog_page = u.page,
        catalog_done = c.catalog_done OR u.done,
        messages = c.messages + u.added,
"""
    + _WATERMARK_FORWARD
    + """,
        conversation = coalesce(c.conversation, u.conversation),
        updated_at = now()
    FROM unnest({}::varchar[], {}::integer[], {}::boolean[], {}::integer[], {}::varchar[],
        {}::timestamptz[], {}::uuid[]) AS u(chat_id, page, done, added, newest_id, newest_at,
        conversation)
    WHERE c.account = {} AND c.tenant = {} AND c.chat_id = u.chat_id
    RETURNING 1
)
UPDATE chatguru_catalog_jobs SET messages = messages + {}, inserted = inserted + {},
    duplicates = duplicates + {}, notes = notes + {}, odd = odd + {},
    chats_done = chats_done + {}, heartbeat_at = now()
WHERE id = {}
"""
)


async def record_batch(
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    job_id: uuid.UUID,
    chats: list[ChatProgress],
    *,
    messages: int,
    inserted: int,
    duplicates: int,
    odd: int,
) -> None:
    """After a catalog batch's messages committed: its notes, every chat's checkpoint,
    message count, watermark (only forward in time) and conversation, and the job's
    counters, in one statement (one round trip per batch, not several per page). Chats
    are sorted so concurrent writers lock them in one order."""
    chats = sorted(chats, key=lambda chat: chat.chat_id)
    notes = [(chat.chat_id, note) for chat in chats for note in chat.notes]
    await raw(
        _RECORD_BATCH,
        tenant_id,
        account_id,
        *_note_columns(notes),
        [c.chat_id for c in chats],
        [c.page for c in chats],
        [c.done for c in chats],
        [c.added for c in chats],
        [c.newest_id for c in chats],
        [c.newest_at for c in chats],
        [c.conversation for c in chats],
        account_id,
        tenant_id,
        messages,
        inserted,
        duplicates,
        len(notes),
        odd,
        sum(c.done for c in chats),
        job_id,
    )


def _note_columns(notes: list[tuple[str, Any]]) -> tuple[list[Any], ...]:
    """(chat id, note) pairs as the five arrays both bookkeeping statements unnest."""
    return (
        [chat_id for chat_id, _ in notes],
        [n.id for _, n in notes],
        [n.author for _, n in notes],
        [n.text for _, n in notes],
        [n.at for _, n in notes],
    )


_RECORD_WATERMARKS = (
    _NEW_NOTES
    + """
UPDATE chatguru_chats c SET
    messages = c.messages + u.added,
"""
    + _WATERMARK_FORWARD
    + """,
    upstream_updated_at = u.seen,
    updated_at = now()
FROM unnest({}::varchar[], {}::integer[], {}::varchar[], {}::timestamptz[],
    {}::timestamptz[]) AS u(chat_id, added, newest_id, newest_at, seen)
WHERE c.account = {} AND c.tenant = {} AND c.chat_id = u.chat_id
"""
)


async def record_watermarks(
    tenant_id: uuid.UUID, account_id: uuid.UUID, chats: list[ChatProgress]
) -> None:
    """After a poll's messages are stored: the chats' notes, counts, watermarks (only
    forward in time) and the `updated` they were read at, in one statement instead of
    two per chat."""
    notes = [(chat.chat_id, note) for chat in chats for note in chat.notes]
    if not chats:
        return
    read = sorted(chats, key=lambda c: c.chat_id)
    await raw(
        _RECORD_WATERMARKS,
        tenant_id,
        account_id,
        *_note_columns(notes),
        [c.chat_id for c in read],
        [c.added for c in read],
        [c.newest_id for c in read],
        [c.newest_at for c in read],
        [c.seen for c in read],
        account_id,
        tenant_id,
    )


async def reset_checkpoints(
    tenant_id: uuid.UUID, account_id: uuid.UUID, chat_ids: list[str]
) -> None:
    """Mark chats for the catalog to read again from their newest page (a poll found
    more new pages than it reads)."""
    await raw(
        "UPDATE chatguru_chats SET catalog_done = false, catalog_page = 0, updated_at = now() "
        "WHERE tenant = {} AND account = {} AND chat_id = ANY({}::varchar[])",
        tenant_id,
        account_id,
        chat_ids,
    )
