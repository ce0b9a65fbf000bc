"""Message templates: provider-approved templates (per channel) and company-wide canned replies.

A name is unique per (channel, language), as providers key templates that way; a
template without a channel is a canned reply usable on any of them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from guiche.api.common import changes, like_pattern, path_id
from guiche.auth.principal import current_principal
from guiche.companies.audit import record_audit
from guiche.foundation.errors import Conflict, ValidationFailed
from guiche.http.endpoint import RequestBody, endpoint
from guiche.http.pagination import Page, PageQuery, paginate
from guiche.models import Channel, Template
from guiche.tenancy.scope import get_owned, owned

routes = web.RouteTableDef()
TAGS = ("templates",)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Language = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=20, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$"
    ),
]
_CODE = r"^[A-Za-z_]+$"
#: Upper-cased provider codes, as long as their columns (category 40, status 30).
Code = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=40, pattern=_CODE),
    AfterValidator(str.upper),
]
Status = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=30, pattern=_CODE),
    AfterValidator(str.upper),
]
Body = Annotated[str, StringConstraints(max_length=4096)]
Components = Annotated[list[dict[str, Any]], Field(max_length=50)]


class TemplateIn(RequestBody):
    name: Name
    language: Language = "pt_BR"
    category: Code = "UTILITY"
    body: Body = ""
    components: Components = []
    channel_id: uuid.UUID | None = None
    status: Status = "APPROVED"
    external_id: Annotated[str, StringConstraints(max_length=200)] | None = None


class TemplatePatch(RequestBody):
    name: Name | None = None
    language: Language | None = None
    category: Code | None = None
    body: Body | None = None
    components: Components | None = None
    channel_id: uuid.UUID | None = None
    status: Status | None = None
    external_id: Annotated[str, StringConstraints(max_length=200)] | None = None


class TemplateListQuery(PageQuery):
    q: str | None = None
    channel_id: uuid.UUID | None = None
    language: str | None = None
    status: str | None = None


class TemplateOut(BaseModel):
    id: uuid.UUID
    name: str
    language: str
    category: str
    body: str
    components: list[dict[str, Any]]
    channel_id: uuid.UUID | None
    status: str
    external_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


def _out(row: dict[str, Any]) -> TemplateOut:
    return TemplateOut.model_validate({**row, "channel_id": row["channel"]})


async def _check_channel(tenant_id: uuid.UUID, channel_id: uuid.UUID | None) -> None:
    if channel_id is None:
        return
    found = await Channel.exists().where((Channel.tenant == tenant_id) & (Channel.id == channel_id))
    if not found:
        raise ValidationFailed(
            "Unknown channel", details=[{"field": "channel_id", "message": "channel not found"}]
        )


def _conflict() -> Conflict:
    return Conflict(
        "A template with this name and language already exists for this channel",
        code="duplicate_template",
        details={"fields": ["name", "language", "channel_id"]},
    )


@routes.get("/api/v1/templates")
@endpoint(
    "templates.read",
    query=TemplateListQuery,
    response=Page[TemplateOut],
    summary="List templates",
    tags=TAGS,
)
async def list_templates(request: web.Request, *, query: TemplateListQuery) -> Page[Any]:
    principal = current_principal(request)
    select = owned(Template, principal.tenant_id).output(load_json=True)
    if query.q:
        select = select.where(Template.name.ilike(like_pattern(query.q)))
    if query.channel_id:
        select = select.where(Template.channel == query.channel_id)
    if query.language:
        select = select.where(Template.language == query.language)
    if query.status:
        select = select.where(Template.status == query.status.upper())
    rows, cursor = await paginate(select, Template, query)
    return Page[TemplateOut](items=[_out(row) for row in rows], next_cursor=cursor)


@routes.post("/api/v1/templates")
@endpoint(
    "templates.manage",
    body=TemplateIn,
    response=TemplateOut,
    status=201,
    summary="Create a template",
    tags=TAGS,
    errors=(409,),
)
async def create_template(request: web.Request, *, body: TemplateIn) -> TemplateOut:
    principal = current_principal(request)
    await _check_channel(principal.tenant_id, body.channel_id)
    values = body.model_dump(exclude={"channel_id"})
    try:
        async with Template._meta.db.transaction():
            rows = await Template.insert(
                Template(tenant=principal.tenant_id, channel=body.channel_id, **values)
            ).returning(Template.id)
            template_id = rows[0]["id"]
            await record_audit(
                principal, "template.create", "template", template_id, {"name": body.name}
            )
    except asyncpg.UniqueViolationError:
        raise _conflict() from None
    return _out(await get_owned(Template, principal.tenant_id, template_id, what="template"))


@routes.get("/api/v1/templates/{id}")
@endpoint("templates.read", response=TemplateOut, summary="Get a template", tags=TAGS)
async def get_template(request: web.Request) -> TemplateOut:
    principal = current_principal(request)
    template_id = path_id(request, "template")
    return _out(await get_owned(Template, principal.tenant_id, template_id, what="template"))


@routes.patch("/api/v1/templates/{id}")
@endpoint(
    "templates.manage",
    body=TemplatePatch,
    response=TemplateOut,
    summary="Update a template",
    tags=TAGS,
    errors=(409,),
)
async def update_template(request: web.Request, *, body: TemplatePatch) -> TemplateOut:
    principal = current_principal(request)
    template_id = path_id(request, "template")
    await get_owned(Template, principal.tenant_id, template_id, what="template")
    values = changes(body, nullable=("channel_id", "external_id"))
    if "channel_id" in values:
        await _check_channel(principal.tenant_id, values["channel_id"])
        values["channel"] = values.pop("channel_id")
    if values:
        try:
            async with Template._meta.db.transaction():
                await Template.update({**values, "updated_at": dt.datetime.now(dt.UTC)}).where(
                    (Template.tenant == principal.tenant_id) & (Template.id == template_id)
                )
                await record_audit(
                    principal,
                    "template.update",
                    "template",
                    template_id,
                    {"fields": sorted(values)},
                )
        except asyncpg.UniqueViolationError:
            raise _conflict() from None
    return _out(await get_owned(Template, principal.tenant_id, template_id, what="template"))


@routes.delete("/api/v1/templates/{id}")
@endpoint("templates.manage", status=204, summary="Delete a template", tags=TAGS)
async def delete_template(request: web.Request) -> None:
    principal = current_principal(request)
    template_id = path_id(request, "template")
    row = await get_owned(Template, principal.tenant_id, template_id, what="template")
    async with Template._meta.db.transaction():
        await Template.delete().where(
            (Template.tenant == principal.tenant_id) & (Template.id == template_id)
        )
        await record_audit(
            principal, "template.delete", "template", template_id, {"name": row["name"]}
        )
