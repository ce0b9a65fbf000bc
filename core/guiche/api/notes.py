"""Internal notes on a contact or a conversation: seen by the team, never by the customer."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, StringConstraints

from guiche.api.common import path_id
from guiche.auth.principal import current_principal
from guiche.companies.accounts import display_names
from guiche.companies.audit import record_audit
from guiche.foundation.errors import Forbidden, ValidationFailed
from guiche.http.endpoint import RequestBody, endpoint
from guiche.http.pagination import Page, PageQuery, paginate
from guiche.models import Contact, Conversation, Note
from guiche.tenancy.scope import get_owned, owned

routes = web.RouteTableDef()
TAGS = ("notes",)


class _OneTarget(BaseModel):
    contact_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None


class NoteIn(_OneTarget, RequestBody):
    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10000)]


class NoteListQuery(PageQuery, _OneTarget):
    pass


class NoteAuthor(BaseModel):
    """Who wrote it: one of the company's people, or (`id` null) someone in another
    system a plugin imported the note from (a ChatGuru agent)."""

    id: uuid.UUID | None
    name: str


class NoteOut(BaseModel):
    id: uuid.UUID
    body: str
    contact_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    author: NoteAuthor | None
    created_at: dt.datetime


COLUMNS = (
    Note.id,
    Note.body,
    Note.contact,
    Note.conversation,
    Note.created_at,
    Note.author.id.as_alias("author_id"),
    Note.author.name.as_alias("author_user_name"),
    Note.author_name,
)


async def _outs(tenant_id: uuid.UUID, rows: list[dict[str, Any]]) -> list[NoteOut]:
    """Notes with their authors named as this company names them."""
    names = await display_names(tenant_id, [r["author_id"] for r in rows if r["author_id"]])
    return [_out(row, names) for row in rows]


def _out(row: dict[str, Any], names: dict[uuid.UUID, str]) -> NoteOut:
    author = None
    if row["author_id"] is not None:
        name = names.get(row["author_id"], row["author_user_name"])
        author = NoteAuthor(id=row["author_id"], name=name or "")
    elif row["author_name"]:
        author = NoteAuthor(id=None, name=row["author_name"])
    return NoteOut(
        id=row["id"],
        body=row["body"],
        contact_id=row["contact"],
        conversation_id=row["conversation"],
        author=author,
        created_at=row["created_at"],
    )


async def _check_target(tenant_id: uuid.UUID, target: _OneTarget) -> None:
    """Exactly one target (else 422), and it is this company's (else 404)."""
    if (target.contact_id is None) == (target.conversation_id is None):
        message = "give exactly one of contact_id or conversation_id"
        raise ValidationFailed(
            "A note belongs to one contact or one conversation",
            details=[
                {"field": "contact_id", "message": message},
                {"field": "conversation_id", "message": message},
            ],
        )
    if target.contact_id is not None:
        await get_owned(Contact, tenant_id, target.contact_id, Contact.id, what="contact")
    else:
        await get_owned(
            Conversation, tenant_id, target.conversation_id, Conversation.id, what="conversation"
        )


@routes.get("/api/v1/notes")
@endpoint(
    "notes.read",
    query=NoteListQuery,
    response=Page[NoteOut],
    summary="List the notes on a contact or a conversation",
    tags=TAGS,
    errors=(404,),
)
async def list_notes(request: web.Request, *, query: NoteListQuery) -> Page[Any]:
    principal = current_principal(request)
    await _check_target(principal.tenant_id, query)
    select = owned(Note, principal.tenant_id, *COLUMNS)
    if query.contact_id is not None:
        select = select.where(Note.contact == query.contact_id)
    else:
        select = select.where(Note.conversation == query.conversation_id)
    rows, cursor = await paginate(select, Note, query)
    return Page[NoteOut](items=await _outs(principal.tenant_id, rows), next_cursor=cursor)


@routes.post("/api/v1/notes")
@endpoint(
    "notes.write",
    body=NoteIn,
    response=NoteOut,
    status=201,
    summary="Write a note on a contact or a conversation",
    tags=TAGS,
    errors=(404,),
)
async def create_note(request: web.Request, *, body: NoteIn) -> NoteOut:
    principal = current_principal(request)
    await _check_target(principal.tenant_id, body)
    async with Note._meta.db.transaction():
        rows = await Note.insert(
            Note(
                tenant=principal.tenant_id,
                author=principal.user_id,
                contact=body.contact_id,
                conversation=body.conversation_id,
                body=body.body,
            )
        ).returning(Note.id)
        note_id = rows[0]["id"]
        await record_audit(principal, "note.create", "note", note_id)
    row = await get_owned(Note, principal.tenant_id, note_id, *COLUMNS, what="note")
    (note,) = await _outs(principal.tenant_id, [row])
    return note


@routes.delete("/api/v1/notes/{id}")
@endpoint(
    "notes.write",
    status=204,
    summary="Delete a note (its author, or someone who manages users)",
    tags=TAGS,
)
async def delete_note(request: web.Request) -> None:
    principal = current_principal(request)
    note_id = path_id(request, "note")
    row = await get_owned(Note, principal.tenant_id, note_id, Note.author, what="note")
    is_author = principal.user_id is not None and row["author"] == principal.user_id
    if not is_author and not principal.can("users.manage"):
        raise Forbidden("Only the note's author can delete it", code="not_author")
    async with Note._meta.db.transaction():
        await Note.delete().where((Note.tenant == principal.tenant_id) & (Note.id == note_id))
        await record_audit(principal, "note.delete", "note", note_id)
