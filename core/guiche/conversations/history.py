"""A page of a conversation's messages, newest first, in one statement.

The page is the API's most frequent read (every open conversation, every scroll), so it
is hand-written SQL rather than an ORM query (building one cost more than running it)
and it carries the visibility rule itself: an uncorrelated `EXISTS` on the
conversation, which Postgres evaluates once before the index scan. Only an empty page
needs a second look, to tell "no messages" from "not yours" (`require_visible`).
Only the payload's `normalised` part and media id leave the database: the provider's
raw body stays there.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from guiche.auth.visibility import Viewer
from guiche.database.engine import connection

if TYPE_CHECKING:
    from piccolo.engine.postgres import PostgresEngine

_COLUMNS = """
m.id, m.conversation, m.contact, m.channel, m.direction, m.type, m.body, m.status, m.error,
m.provider_message_id, m.sender, m.reply_to, m.payload->'normalised' AS content,
m.payload->>'media_id' AS media_id, m.created_at, m.updated_at"""


def _page_sql(viewer: Viewer, with_cursor: bool) -> str:
    """The statement: tenant, conversation, limit, [cursor time, cursor id], viewer's."""
    fixed = 5 if with_cursor else 3
    visible, _ = viewer.sql("c", first_param=fixed + 1)
    cursor = "AND (m.created_at, m.id) < ($4, $5)" if with_cursor else ""
    return (
        f"SELECT {_COLUMNS} FROM messages m"
        f" WHERE m.tenant = $1 AND m.conversation = $2 {cursor}"
        f" AND EXISTS (SELECT 1 FROM conversations c"
        f" WHERE c.id = $2 AND c.tenant = $1 AND {visible})"
        " ORDER BY m.created_at DESC, m.id DESC LIMIT $3"
    )


async def message_page(
    engine: PostgresEngine,
    viewer: Viewer,
    conversation_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[dt.datetime, uuid.UUID] | None = None,
) -> list[dict[str, Any]]:
    """Up to `limit` messages older than `before` (created_at, id), newest first; empty
    when there are none or the viewer may not see the conversation."""
    sql = _page_sql(viewer, before is not None)
    _, viewer_args = viewer.sql("c")
    args: list[Any] = [viewer.tenant_id, conversation_id, limit]
    if before is not None:
        args.extend(before)
    args.extend(viewer_args)
    async with connection(engine) as conn:
        rows = await conn.fetch(sql, *args)
    return [dict(row) for row in rows]
