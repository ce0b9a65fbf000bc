"""Message search: `GET /api/v1/messages/search?q=`, scoped like the conversation list.

A case-insensitive substring match on the message text (`body ILIKE '%q%'`, LIKE's
wildcards escaped), answered by the trigram index `messages_body_trgm_idx`, which needs
at least 3 characters to narrow anything: shorter queries are refused. Only messages of
conversations the caller may see (guiche.auth.visibility, then `scope`), newest
first with the usual `(created_at, id)` cursor. Cost: docs/architecture.md, section 5.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from aiohttp import web
from pydantic import AwareDatetime, StringConstraints

from guiche.api.common import like_pattern
from guiche.api.conversations import Scope, SqlWhere, apply_scope, fetch_rows
from guiche.auth.principal import current_principal
from guiche.auth.visibility import viewer_for
from guiche.http.endpoint import endpoint
from guiche.http.pagination import Page, PageQuery, decode_cursor, split_page
from guiche.outbound.schemas import MessageOut
from guiche.runtime.services import services_of

routes = web.RouteTableDef()

SearchText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]


class SearchQuery(PageQuery):
    q: SearchText
    scope: Scope | None = None
    conversation_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    channel_id: uuid.UUID | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


class MessageHit(MessageOut):
    contact_name: str | None = None
    conversation_status: str


_SELECT = """
SELECT m.*, ct.name AS contact_name, c.status AS conversation_status
FROM messages m
JOIN conversations c ON c.id = m.conversation
LEFT JOIN contacts ct ON ct.id = m.contact
"""


@routes.get("/api/v1/messages/search")
@endpoint(
    "conversations.read",
    query=SearchQuery,
    response=Page[MessageHit],
    summary="Search message text (3+ characters) in the conversations you may see, newest first",
    tags=("messages",),
)
async def search_messages(request: web.Request, *, query: SearchQuery) -> Page[MessageHit]:
    principal = current_principal(request)
    viewer = await viewer_for(principal)
    where = SqlWhere()
    tenant = where.param(principal.tenant_id)
    where.add(f"m.tenant = {tenant} AND c.tenant = {tenant}")
    where.add(f"m.body ILIKE {where.param(like_pattern(query.q))}")
    where.visible_to(viewer)
    apply_scope(where, principal, viewer, query.scope)
    for column, value in (
        ("m.conversation", query.conversation_id),
        ("m.contact", query.contact_id),
        ("m.channel", query.channel_id),
    ):
        if value is not None:
            where.add(f"{column} = {where.param(value)}")
    if query.since is not None:
        where.add(f"m.created_at >= {where.param(query.since)}")
    if query.until is not None:
        where.add(f"m.created_at < {where.param(query.until)}")
    if query.cursor:
        at, row_id = decode_cursor(query.cursor)
        where.add(
            f"(m.created_at, m.id) < ({where.param(at)}::timestamptz, {where.param(row_id)}::uuid)"
        )
    sql = (
        f"{_SELECT} WHERE {where.sql()}"
        f" ORDER BY m.created_at DESC, m.id DESC LIMIT {where.param(query.limit + 1)}"
    )
    rows, cursor = split_page(
        await fetch_rows(services_of(request), sql, where.params), query.limit
    )
    items = [
        MessageHit(
            **MessageOut.from_row(dict(row)).model_dump(),
            contact_name=row["contact_name"],
            conversation_status=row["conversation_status"],
        )
        for row in rows
    ]
    return Page[MessageHit](items=items, next_cursor=cursor)
