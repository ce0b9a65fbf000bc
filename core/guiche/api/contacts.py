"""Contacts: the company's customers, one per E.164 phone, searchable and importable.

Phones are stored in E.164 so the number typed by an agent, the one in a spreadsheet and
the one a provider sends all find the same contact.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints

from guiche.api.common import Email, changes, like_pattern, path_id
from guiche.api.contacts_import import ImportReport, import_csv, read_upload
from guiche.auth.principal import current_principal
from guiche.channels import ChatKind
from guiche.companies.audit import record_audit
from guiche.contacts.phones import InvalidPhone, normalize_phone, phone_digits, tenant_region
from guiche.foundation.errors import Conflict, ValidationFailed
from guiche.http.endpoint import RequestBody, endpoint
from guiche.http.pagination import Page, PageQuery, paginate
from guiche.models import Contact
from guiche.runtime.services import services_of
from guiche.tenancy.scope import get_owned, owned

routes = web.RouteTableDef()
TAGS = ("contacts",)

Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
RawPhone = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Document = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
CustomFields = Annotated[dict[str, Any], Field(max_length=200)]


class ContactIn(RequestBody):
    name: Name = ""
    phone: RawPhone | None = None
    email: Email | None = None
    document: Document | None = None
    custom_fields: CustomFields = {}
    opted_out: bool = False


class ContactPatch(RequestBody):
    name: Name | None = None
    phone: RawPhone | None = None
    email: Email | None = None
    document: Document | None = None
    custom_fields: CustomFields | None = None
    opted_out: bool | None = None


class ContactListQuery(PageQuery):
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    opted_out: bool | None = None


class ContactOut(BaseModel):
    id: uuid.UUID
    name: str
    phone: str | None
    email: str | None
    document: str | None
    custom_fields: dict[str, Any]
    opted_out: bool
    opted_out_at: dt.datetime | None
    chat_kind: ChatKind = ChatKind.DIRECT  # a person, or a group / channel chat
    created_at: dt.datetime
    updated_at: dt.datetime


async def _normalized_phone(request: web.Request, tenant_id: uuid.UUID, raw: str) -> str:
    region = await tenant_region(tenant_id, services_of(request))
    try:
        return normalize_phone(raw, region)
    except InvalidPhone as exc:
        raise ValidationFailed(
            "Invalid phone number", details=[{"field": "phone", "message": str(exc)}]
        ) from None


async def _phone_conflict(tenant_id: uuid.UUID, phone: str) -> Conflict:
    existing = await owned(Contact, tenant_id, Contact.id).where(Contact.phone == phone).first()
    return Conflict(
        f"A contact with phone {phone} already exists",
        code="duplicate_phone",
        details={"field": "phone", "existing_id": str(existing["id"]) if existing else None},
    )


async def _load(tenant_id: uuid.UUID, contact_id: uuid.UUID) -> ContactOut:
    return ContactOut.model_validate(
        await get_owned(Contact, tenant_id, contact_id, what="contact")
    )


@routes.get("/api/v1/contacts")
@endpoint(
    "contacts.read",
    query=ContactListQuery,
    response=Page[ContactOut],
    summary="List or search contacts (name, phone digits, document, email)",
    tags=TAGS,
)
async def list_contacts(request: web.Request, *, query: ContactListQuery) -> Page[Any]:
    principal = current_principal(request)
    select = owned(Contact, principal.tenant_id).output(load_json=True)
    if query.q:
        pattern = like_pattern(query.q)
        match = (
            Contact.name.ilike(pattern)
            | Contact.email.ilike(pattern)
            | Contact.document.ilike(pattern)
        )
        digits = phone_digits(query.q)
        if digits:
            match = match | Contact.phone.like(f"%{digits}%")
        select = select.where(match)
    if query.opted_out is not None:
        select = select.where(Contact.opted_out == query.opted_out)
    rows, cursor = await paginate(select, Contact, query)
    return Page[ContactOut](
        items=[ContactOut.model_validate(row) for row in rows], next_cursor=cursor
    )


@routes.post("/api/v1/contacts")
@endpoint(
    "contacts.manage",
    body=ContactIn,
    response=ContactOut,
    status=201,
    summary="Create a contact (phone normalised to E.164)",
    tags=TAGS,
    errors=(409,),
)
async def create_contact(request: web.Request, *, body: ContactIn) -> ContactOut:
    principal = current_principal(request)
    phone = None
    if body.phone is not None:
        phone = await _normalized_phone(request, principal.tenant_id, body.phone)
    now = dt.datetime.now(dt.UTC)
    try:
        async with Contact._meta.db.transaction():
            rows = await Contact.insert(
                Contact(
                    tenant=principal.tenant_id,
                    name=body.name,
                    phone=phone,
                    email=body.email,
                    document=body.document,
                    custom_fields=body.custom_fields,
                    opted_out=body.opted_out,
                    opted_out_at=now if body.opted_out else None,
                )
            ).returning(Contact.id)
            contact_id = rows[0]["id"]
            await record_audit(principal, "contact.create", "contact", contact_id)
    except asyncpg.UniqueViolationError:
        raise await _phone_conflict(principal.tenant_id, phone or "") from None
    return await _load(principal.tenant_id, contact_id)


@routes.post("/api/v1/contacts/import")
@endpoint(
    "contacts.import",
    response=ImportReport,
    summary="Import contacts from CSV (multipart field 'file' or a text/csv body)",
    tags=TAGS,
    content_type="multipart/form-data",
)
async def import_contacts(request: web.Request) -> ImportReport:
    principal = current_principal(request)
    settings = services_of(request).settings
    data = await read_upload(request, settings.max_import_bytes)
    region = await tenant_region(principal.tenant_id, services_of(request))
    async with Contact._meta.db.transaction():
        report = await import_csv(principal.tenant_id, data, region)
        await record_audit(
            principal,
            "contact.import",
            "contact",
            None,
            {"created": report.created, "updated": report.updated, "failed": report.failed},
        )
    return report


@routes.get("/api/v1/contacts/{id}")
@endpoint("contacts.read", response=ContactOut, summary="Get a contact", tags=TAGS)
async def get_contact(request: web.Request) -> ContactOut:
    principal = current_principal(request)
    return await _load(principal.tenant_id, path_id(request, "contact"))


@routes.patch("/api/v1/contacts/{id}")
@endpoint(
    "contacts.manage",
    body=ContactPatch,
    response=ContactOut,
    summary="Update a contact; custom_fields is replaced as a whole",
    tags=TAGS,
    errors=(409,),
)
async def update_contact(request: web.Request, *, body: ContactPatch) -> ContactOut:
    principal = current_principal(request)
    contact_id = path_id(request, "contact")
    current = await get_owned(Contact, principal.tenant_id, contact_id, what="contact")
    values = changes(body, nullable=("phone", "email", "document"))
    if values.get("phone") is not None:
        values["phone"] = await _normalized_phone(request, principal.tenant_id, values["phone"])
    if "opted_out" in values and values["opted_out"] != current["opted_out"]:
        values["opted_out_at"] = dt.datetime.now(dt.UTC) if values["opted_out"] else None
    if values:
        fields = sorted(values)
        values["updated_at"] = dt.datetime.now(dt.UTC)
        try:
            async with Contact._meta.db.transaction():
                await Contact.update(values).where(
                    (Contact.tenant == principal.tenant_id) & (Contact.id == contact_id)
                )
                await record_audit(
                    principal, "contact.update", "contact", contact_id, {"fields": fields}
                )
        except asyncpg.UniqueViolationError:
            raise await _phone_conflict(principal.tenant_id, values["phone"]) from None
    return await _load(principal.tenant_id, contact_id)


@routes.delete("/api/v1/contacts/{id}")
@endpoint(
    "contacts.manage",
    status=204,
    summary="Delete a contact with its conversations and notes (erasure)",
    tags=TAGS,
)
async def delete_contact(request: web.Request) -> None:
    principal = current_principal(request)
    contact_id = path_id(request, "contact")
    await get_owned(Contact, principal.tenant_id, contact_id, Contact.id, what="contact")
    async with Contact._meta.db.transaction():
        await Contact.delete().where(
            (Contact.tenant == principal.tenant_id) & (Contact.id == contact_id)
        )
        await record_audit(principal, "contact.delete", "contact", contact_id)
