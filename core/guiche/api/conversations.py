"""Conversations: the lists agents work from, and the moves they make on one.

Lists are filtered by the one visibility rule (guiche.auth.visibility) and
ordered by latest activity; `scope` only narrows what the caller may already see.
The moves themselves live in guiche.conversations.transitions.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints, model_validator

from guiche.api.common import like_pattern, path_id
from guiche.auth.principal import Principal, current_principal
from guiche.auth.visibility import Viewer, viewer_for
from guiche.conversations import reads, transitions
from guiche.conversations.start import ConversationAlreadyOpen, StartRequest, start_conversation
from guiche.foundation.errors import Conflict, Forbidden, NotFound
from guiche.http.endpoint import RequestBody, endpoint
from guiche.http.pagination import Page, PageQuery, decode_cursor, split_page
from guiche.outbound.schemas import MessageOut, SendRequest
from guiche.outbound.service import load_visible_conversation
from guiche.runtime.services import Services, services_of

routes = web.RouteTableDef()
TAGS = ("conversations",)

Category = Literal["bot", "pending", "active", "closed"]
Scope = Literal["mine", "departments", "all"]
NoteText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=10000)]


class ConversationListQuery(PageQuery):
    category: Category | None = None
    scope: Scope | None = None
    department_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    q: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    ] | None = Field(None, description="The contact's name or phone contains this (any case)")


class Ref(BaseModel):
    id: uuid.UUID
    name: str


class ContactRef(Ref):
    phone: str | None


class ChannelRef(Ref):
    type: str


class LastMessage(BaseModel):
    id: uuid.UUID
    direction: str
    type: str
    body: str
    status: str
    created_at: dt.datetime


class ConversationOut(BaseModel):
    id: uuid.UUID
    status: str
    contact: ContactRef
    channel: ChannelRef
    department: Ref | None
    assignee: Ref | None
    tabulation: Ref | None
    opened_at: dt.datetime
    assigned_at: dt.datetime | None
    queued_at: dt.datetime | None
    first_agent_reply_at: dt.datetime | None
    last_inbound_at: dt.datetime | None
    last_message_at: dt.datetime | None
    closed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    last_message: LastMessage | None
    unread_count: int | None = None
    """Inbound messages after your read marker (capped at 100); null for API keys and in
    answers to moves."""


class AssignIn(RequestBody):
    user_id: uuid.UUID


class TransferIn(RequestBody):
    user_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    note: NoteText = ""

    @model_validator(mode="after")
    def _one_target(self) -> TransferIn:
        if (self.user_id is None) == (self.department_id is None):
            raise ValueError("give exactly one of user_id or department_id")
        return self


class CloseIn(RequestBody):
    tabulation_id: uuid.UUID


class StartConversationIn(RequestBody):
    """A contact, one of the company's channels and the first message (text, media or a
    template with its parameters). Without `department_id` the channel's default department
    is used; without `assignee_id` the caller (a person) holds the conversation."""

    contact_id: uuid.UUID
    channel_id: uuid.UUID
    department_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | None = None
    message: SendRequest


class StartedOut(BaseModel):
    conversation: ConversationOut
    message: MessageOut


_SELECT = """
SELECT c.id, c.status, c.opened_at, c.assigned_at, c.queued_at, c.first_agent_reply_at,
       c.last_inbound_at, c.last_message_at, c.closed_at, c.created_at, c.updated_at,
       c.department AS department_id, c.assignee AS assignee_id,
       coalesce(c.last_message_at, c.created_at) AS activity_at,
       ct.id AS contact_id, ct.name AS contact_name, ct.phone AS contact_phone,
       ch.id AS channel_id, ch.name AS channel_name, ch.type AS channel_type,
       d.name AS department_name, coalesce(am.display_name, u.name) AS assignee_name,
       tb.id AS tabulation_id, tb.name AS tabulation_name,
       lm.id AS lm_id, lm.direction AS lm_direction, lm.type AS lm_type,
       left(lm.body, 200) AS lm_body, lm.status AS lm_status, lm.created_at AS lm_created_at
FROM conversations c
JOIN contacts ct ON ct.id = c.contact
JOIN channels ch ON ch.id = c.channel
LEFT JOIN departments d ON d.id = c.department
LEFT JOIN users u ON u.id = c.assignee
LEFT JOIN memberships am ON am.tenant = c.tenant AND am."user" = c.assignee
LEFT JOIN tabulations tb ON tb.id = c.tabulation
LEFT JOIN LATERAL (
    SELECT m.id, m.direction, m.type, m.body, m.status, m.created_at FROM messages m
    WHERE m.conversation = c.id
    ORDER BY m.created_at DESC, m.id DESC
    LIMIT 1
) lm ON TRUE
"""

_STATUS_OF = {"bot": "BOT", "pending": "PENDING", "active": "ACTIVE", "closed": "CLOSED"}


def _ref(row: Any, prefix: str) -> Ref | None:
    if row[f"{prefix}_id"] is None:
        return None
    return Ref(id=row[f"{prefix}_id"], name=row[f"{prefix}_name"] or "")


def _out(row: Any) -> ConversationOut:
    last = None
    if row["lm_id"] is not None:
        last = LastMessage(
            id=row["lm_id"],
            direction=row["lm_direction"],
            type=row["lm_type"],
            body=row["lm_body"],
            status=row["lm_status"],
            created_at=row["lm_created_at"],
        )
    return ConversationOut(
        id=row["id"],
        status=row["status"],
        contact=ContactRef(
            id=row["contact_id"], name=row["contact_name"], phone=row["contact_phone"]
        ),
        channel=ChannelRef(
            id=row["channel_id"], name=row["channel_name"], type=row["channel_type"]
        ),
        department=_ref(row, "department"),
        assignee=_ref(row, "assignee"),
        tabulation=_ref(row, "tabulation"),
        opened_at=row["opened_at"],
        assigned_at=row["assigned_at"],
        queued_at=row["queued_at"],
        first_agent_reply_at=row["first_agent_reply_at"],
        last_inbound_at=row["last_inbound_at"],
        last_message_at=row["last_message_at"],
        closed_at=row["closed_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_message=last,
    )


class SqlWhere:
    """WHERE clauses with asyncpg's numbered parameters."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: list[Any] = []

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def add(self, clause: str) -> None:
        self.clauses.append(clause)

    def visible_to(self, viewer: Viewer) -> None:
        fragment, params = viewer.sql("c", len(self.params) + 1)
        self.params.extend(params)
        self.add(fragment)

    def sql(self) -> str:
        return " AND ".join(self.clauses)


def apply_scope(where: SqlWhere, principal: Principal, viewer: Viewer, scope: str | None) -> None:
    """Narrow to the scope asked for; a scope beyond the caller's role is refused."""
    if scope == "all" and not viewer.all:
        raise Forbidden(
            "Your role cannot list every conversation of the company",
            code="scope_not_allowed",
            details={"scope": scope, "permission": "conversations.read_all"},
        )
    if scope == "mine":
        if principal.user_id is None:
            raise Forbidden("scope=mine needs a person, not an API key", code="scope_not_allowed")
        where.add(f"c.assignee = {where.param(principal.user_id)}")
    elif scope == "departments":
        where.add(f"c.department = ANY({where.param(list(viewer.departments))}::uuid[])")


async def fetch_rows(services: Services, sql: str, params: list[Any]) -> list[Any]:
    pool = services.db.pool
    assert pool is not None, "the database pool opens with the app"
    return await pool.fetch(sql, *params)


async def load_conversation(
    services: Services, tenant_id: uuid.UUID, conversation_id: uuid.UUID
) -> ConversationOut | None:
    """One of the tenant's conversations as the API shows it (no visibility check)."""
    rows = await fetch_rows(
        services, _SELECT + " WHERE c.tenant = $1 AND c.id = $2", [tenant_id, conversation_id]
    )
    return _out(rows[0]) if rows else None


@routes.get("/api/v1/conversations")
@endpoint(
    "conversations.read",
    query=ConversationListQuery,
    response=Page[ConversationOut],
    summary="List the conversations you may see, latest activity first",
    tags=TAGS,
)
async def list_conversations(
    request: web.Request, *, query: ConversationListQuery
) -> Page[ConversationOut]:
    principal = current_principal(request)
    viewer = await viewer_for(principal)
    where = SqlWhere()
    where.add(f"c.tenant = {where.param(principal.tenant_id)}")
    where.visible_to(viewer)
    apply_scope(where, principal, viewer, query.scope)
    if query.category:
        where.add(f"c.status = {where.param(_STATUS_OF[query.category])}")
    if query.department_id:
        where.add(f"c.department = {where.param(query.department_id)}")
    if query.assignee_id:
        where.add(f"c.assignee = {where.param(query.assignee_id)}")
    if query.contact_id:
        where.add(f"c.contact = {where.param(query.contact_id)}")
    if query.q:
        pattern = where.param(like_pattern(query.q))
        where.add(f"(ct.name ILIKE {pattern} OR ct.phone ILIKE {pattern})")
    if query.cursor:
        at, row_id = decode_cursor(query.cursor)
        where.add(
            f"(coalesce(c.last_message_at, c.created_at), c.id)"
            f" < ({where.param(at)}::timestamptz, {where.param(row_id)}::uuid)"
        )
    sql = (
        f"{_SELECT} WHERE {where.sql()}"
        f" ORDER BY activity_at DESC, c.id DESC LIMIT {where.param(query.limit + 1)}"
    )
    rows, cursor = split_page(
        await fetch_rows(services_of(request), sql, where.params), query.limit, "activity_at"
    )
    items = await _with_unread(services_of(request), principal, [_out(row) for row in rows])
    return Page[ConversationOut](items=items, next_cursor=cursor)


async def _with_unread(
    services: Services, principal: Principal, items: list[ConversationOut]
) -> list[ConversationOut]:
    """Set `unread_count` for a person (one query for the whole page)."""
    if principal.user_id is None:
        return items
    counts = await reads.unread_counts(
        services, principal.tenant_id, principal.user_id, [item.id for item in items]
    )
    for item in items:
        item.unread_count = counts.get(item.id, 0)
    return items


class UnreadQuery(BaseModel):
    scope: Scope | None = None


class UnreadOut(BaseModel):
    """Conversations with unread customer messages, per category, among those you may see."""

    bot: int
    pending: int
    active: int
    closed: int


@routes.get("/api/v1/conversations/unread")
@endpoint(
    "conversations.read",
    query=UnreadQuery,
    response=UnreadOut,
    summary="How many conversations have unread messages, per category (and scope)",
    tags=TAGS,
)
async def unread_summary(request: web.Request, *, query: UnreadQuery) -> UnreadOut:
    principal = current_principal(request)
    user_id = transitions.person(principal, "count unread in")
    viewer = await viewer_for(principal)
    where = SqlWhere()
    user = where.param(user_id)
    where.add(f"c.tenant = {where.param(principal.tenant_id)}")
    where.visible_to(viewer)
    apply_scope(where, principal, viewer, query.scope)
    where.add(reads.UNREAD)
    sql = (
        "SELECT c.status, count(*) AS n FROM conversations c"
        f' LEFT JOIN conversation_reads r ON r.conversation = c.id AND r."user" = {user}'
        f" WHERE {where.sql()} GROUP BY c.status"
    )
    rows = await fetch_rows(services_of(request), sql, where.params)
    counts = {row["status"].lower(): row["n"] for row in rows}
    return UnreadOut(**{name: counts.get(name, 0) for name in _STATUS_OF})


class ReadOut(BaseModel):
    conversation_id: uuid.UUID
    last_read_at: dt.datetime
    receipt: reads.ReceiptOutcome
    """`sent` to the provider, `failed` (logged; the marker still moved), `unsupported` by
    the channel, or `nothing_to_acknowledge` (no inbound message with a provider id)."""


@routes.post("/api/v1/conversations/{id}/read")
@endpoint(
    "conversations.read",
    response=ReadOut,
    summary="Mark a conversation read (and send the provider's read receipt where supported)",
    tags=TAGS,
)
async def mark_read(request: web.Request) -> ReadOut:
    principal = current_principal(request)
    user_id = transitions.person(principal, "mark read")
    conversation_id = path_id(request, "conversation")
    conversation = await load_visible_conversation(principal, conversation_id)
    read_at, receipt = await reads.mark_read(
        services_of(request), principal.tenant_id, user_id, conversation
    )
    return ReadOut(conversation_id=conversation_id, last_read_at=read_at, receipt=receipt)


@routes.post("/api/v1/conversations")
@endpoint(
    "conversations.start",
    body=StartConversationIn,
    response=StartedOut,
    status=201,
    summary="Start a conversation with a contact (first message or template, sent via the outbox)",
    tags=TAGS,
    errors=(409,),
)
async def start(request: web.Request, *, body: StartConversationIn) -> StartedOut:
    """409 `conversation_already_open` carries the open conversation (`details.conversation`,
    when the caller may see it) so the client continues it; 409 `channel_unavailable` /
    `contact_opted_out` / `contact_unreachable`; 422 for references outside the company
    and `outside_customer_care_window` when the channel only allows a template now."""
    services = services_of(request)
    principal = current_principal(request)
    wanted = StartRequest(
        contact_id=body.contact_id,
        channel_id=body.channel_id,
        department_id=body.department_id,
        assignee_id=body.assignee_id,
        message=body.message,
    )
    try:
        started = await start_conversation(services, principal, wanted)
    except ConversationAlreadyOpen as exc:
        raise await _already_open(services, principal, exc) from None
    conversation = await load_conversation(services, principal.tenant_id, started.conversation_id)
    if conversation is None:  # deleted in between
        raise NotFound("conversation not found")
    return StartedOut(conversation=conversation, message=started.message)


async def _already_open(
    services: Services, principal: Principal, exc: ConversationAlreadyOpen
) -> Conflict:
    """The 409, with the open conversation's body when the caller may see it."""
    found = await load_conversation(services, principal.tenant_id, exc.conversation_id)
    details = dict(exc.details or {})
    if found is not None and (await viewer_for(principal)).can_see(
        department_id=found.department.id if found.department else None,
        assignee_id=found.assignee.id if found.assignee else None,
        status=found.status,
    ):
        details["conversation"] = found.model_dump(mode="json")
    return Conflict(exc.message, code=exc.code, details=details)


@routes.get("/api/v1/conversations/{id}")
@endpoint("conversations.read", response=ConversationOut, summary="Get a conversation", tags=TAGS)
async def get_conversation(request: web.Request) -> ConversationOut:
    principal = current_principal(request)
    conversation_id = path_id(request, "conversation")
    viewer = await viewer_for(principal)
    found = await load_conversation(services_of(request), principal.tenant_id, conversation_id)
    if found is None or not viewer.can_see(
        department_id=found.department.id if found.department else None,
        assignee_id=found.assignee.id if found.assignee else None,
        status=found.status,
    ):
        raise NotFound("conversation not found")
    [found] = await _with_unread(services_of(request), principal, [found])
    return found


async def _moved(request: web.Request, conversation_id: uuid.UUID) -> ConversationOut:
    """The conversation after a move (the mover may no longer see it, e.g. after a transfer)."""
    principal = current_principal(request)
    found = await load_conversation(services_of(request), principal.tenant_id, conversation_id)
    if found is None:  # deleted in between
        raise NotFound("conversation not found")
    return found


async def _caller(request: web.Request) -> tuple[Services, Principal, Viewer, uuid.UUID]:
    principal = current_principal(request)
    conversation_id = path_id(request, "conversation")
    return services_of(request), principal, await viewer_for(principal), conversation_id


@routes.post("/api/v1/conversations/{id}/accept")
@endpoint(
    "conversations.accept",
    response=ConversationOut,
    summary="Take a queued conversation (within your concurrent-chat cap)",
    tags=TAGS,
    errors=(409,),
)
async def accept_conversation(request: web.Request) -> ConversationOut:
    services, principal, viewer, conversation_id = await _caller(request)
    await transitions.accept(services, principal, viewer, conversation_id)
    return await _moved(request, conversation_id)


@routes.post("/api/v1/conversations/{id}/assign")
@endpoint(
    "conversations.assign",
    body=AssignIn,
    response=ConversationOut,
    summary="Assign a conversation to a person (their cap does not apply)",
    tags=TAGS,
    errors=(409,),
)
async def assign_conversation(request: web.Request, *, body: AssignIn) -> ConversationOut:
    services, principal, viewer, conversation_id = await _caller(request)
    await transitions.assign(services, principal, viewer, conversation_id, body.user_id)
    return await _moved(request, conversation_id)


@routes.post("/api/v1/conversations/{id}/transfer")
@endpoint(
    "conversations.transfer",
    body=TransferIn,
    response=ConversationOut,
    summary="Transfer a conversation to a person or to a department's queue, with a note",
    tags=TAGS,
    errors=(409,),
)
async def transfer_conversation(request: web.Request, *, body: TransferIn) -> ConversationOut:
    services, principal, viewer, conversation_id = await _caller(request)
    await transitions.transfer(
        services,
        principal,
        viewer,
        conversation_id,
        user_id=body.user_id,
        department_id=body.department_id,
        note=body.note,
    )
    return await _moved(request, conversation_id)


@routes.post("/api/v1/conversations/{id}/close")
@endpoint(
    "conversations.close",
    body=CloseIn,
    response=ConversationOut,
    summary="Close a conversation with a tabulation (required)",
    tags=TAGS,
    errors=(409,),
)
async def close_conversation(request: web.Request, *, body: CloseIn) -> ConversationOut:
    services, principal, viewer, conversation_id = await _caller(request)
    await transitions.close(services, principal, viewer, conversation_id, body.tabulation_id)
    return await _moved(request, conversation_id)


@routes.post("/api/v1/conversations/{id}/reopen")
@endpoint(
    "conversations.reopen",
    response=ConversationOut,
    summary="Reopen a closed conversation: back to its department's queue",
    tags=TAGS,
    errors=(409,),
)
async def reopen_conversation(request: web.Request) -> ConversationOut:
    services, principal, viewer, conversation_id = await _caller(request)
    await transitions.reopen(services, principal, viewer, conversation_id)
    return await _moved(request, conversation_id)
