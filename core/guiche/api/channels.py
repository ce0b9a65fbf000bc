"""Channels: a company's connection to one provider account (a WhatsApp number, ...).

The type comes from an installed plugin the company has enabled; its credentials are
validated by that plugin's model, stored encrypted, and only ever shown masked. A
masked value sent back unchanged (a form round-trip) keeps the stored secret.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from guiche.api.common import changes, path_id
from guiche.auth.principal import current_principal
from guiche.channel_host.claims import (
    Released,
    held_by_other,
    identity_of,
    is_claim_conflict,
    lock_identity,
    refused,
    take_over,
)
from guiche.channel_host.lifecycle import (
    PROVISIONED,
    identity_released,
    prove_control,
    provision_channel,
    release_channel,
    set_channel_state,
)
from guiche.channel_host.runtime import channel_changed, channel_info, load_channel_adapter
from guiche.companies.audit import record_audit
from guiche.companies.enablement import enabled_settings
from guiche.contacts.phones import InvalidPhone, normalize_phone, tenant_region
from guiche.database.engine import connection
from guiche.foundation.config import ConfigError
from guiche.foundation.crypto import (
    CredentialCipher,
    CredentialsUnreadable,
    credentials_to_store,
    mask_credentials,
    mask_value,
)
from guiche.foundation.errors import (
    Conflict,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
    pydantic_details,
)
from guiche.foundation.jsonio import validate_strict
from guiche.http.endpoint import RequestBody, endpoint
from guiche.http.pagination import Page, PageQuery, paginate
from guiche.models import Channel, Department
from guiche.plugin import ChannelSpec
from guiche.runtime.services import services_of
from guiche.tenancy.scope import get_owned, owned

routes = web.RouteTableDef()
TAGS = ("channels",)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
RawPhone = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Credentials = Annotated[dict[str, Any], Field(max_length=100)]


class ChannelIn(RequestBody):
    type: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
    name: Name
    phone: RawPhone | None = None
    credentials: Credentials = {}
    default_department_id: uuid.UUID | None = None


class ChannelPatch(RequestBody):
    name: Name | None = None
    phone: RawPhone | None = None
    credentials: Credentials | None = None
    default_department_id: uuid.UUID | None = None
    is_active: bool | None = None


class ChannelListQuery(PageQuery):
    type: str | None = None
    include_inactive: bool = False


class ChannelOut(BaseModel):
    id: uuid.UUID
    type: str
    name: str
    phone: str | None
    is_active: bool
    state: str
    state_detail: str
    default_department_id: uuid.UUID | None
    credentials: dict[str, Any] | None = Field(
        description="Every value masked; null when the stored value cannot be decrypted"
    )
    created_at: dt.datetime
    updated_at: dt.datetime


def _cipher(request: web.Request) -> CredentialCipher:
    try:
        return CredentialCipher(services_of(request).settings.encryption_keys)
    except ConfigError as exc:
        raise ServiceUnavailable(str(exc), code="encryption_not_configured") from None


def _display_cipher(request: web.Request) -> CredentialCipher | None:
    """For reading only: a missing key shows credentials as null instead of failing reads."""
    try:
        return _cipher(request)
    except ServiceUnavailable:
        return None


def _out(cipher: CredentialCipher | None, row: dict[str, Any]) -> ChannelOut:
    credentials: dict[str, Any] | None = None
    if cipher is not None:
        try:
            credentials = mask_credentials(cipher.decrypt(row["credentials_encrypted"]))
        except CredentialsUnreadable:
            credentials = None
    return ChannelOut.model_validate(
        {**row, "default_department_id": row["default_department"], "credentials": credentials}
    )


async def _spec_for(request: web.Request, tenant_id: uuid.UUID, type_name: str) -> ChannelSpec:
    """The channel type's spec, if an installed plugin provides it and the company enabled it."""
    found = services_of(request).plugins.channel_type(type_name)
    if found is None:
        raise _invalid("type", f"unknown channel type {type_name!r}")
    plugin_name, spec = found
    if plugin_name not in await enabled_settings(services_of(request), tenant_id):
        # The same answer as the plugin's own routes give a company that has not enabled it.
        raise NotFound(
            f"Plugin {plugin_name!r} is not enabled for this company",
            code="plugin_not_enabled",
            details={"plugin": plugin_name, "field": "type"},
        )
    return spec


def _validate_credentials(spec: ChannelSpec, data: dict[str, Any]) -> dict[str, Any]:
    try:
        model = validate_strict(spec.credentials_model, data)
    except ValidationError as exc:
        details = pydantic_details(exc.errors())
        for item in details:
            item["field"] = f"credentials.{item['field']}".rstrip(".")
        raise ValidationFailed("Invalid channel credentials", details=details) from None
    return credentials_to_store(model)


def _merge_credentials(stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` over `stored`; null removes a key; an unchanged masked value keeps the secret."""
    merged = dict(stored)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif key in stored and value == mask_value(stored[key]):
            continue
        else:
            merged[key] = value
    return merged


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"Invalid {field}: {message}", details=[{"field": field, "message": message}]
    )


async def _phone(request: web.Request, tenant_id: uuid.UUID, raw: str) -> str:
    region = await tenant_region(tenant_id, services_of(request))
    try:
        return normalize_phone(raw, region, meta_test_numbers=True)
    except InvalidPhone as exc:
        raise _invalid("phone", str(exc)) from None


async def _check_department(tenant_id: uuid.UUID, department_id: uuid.UUID | None) -> None:
    if department_id is None:
        return
    found = await Department.exists().where(
        (Department.tenant == tenant_id)
        & (Department.id == department_id)
        & (Department.is_active == True)  # noqa: E712
    )
    if not found:
        raise _invalid("default_department_id", "department not found")


@routes.get("/api/v1/channels")
@endpoint(
    "channels.read",
    query=ChannelListQuery,
    response=Page[ChannelOut],
    summary="List channels (credentials masked)",
    tags=TAGS,
)
async def list_channels(request: web.Request, *, query: ChannelListQuery) -> Page[Any]:
    principal = current_principal(request)
    select = owned(Channel, principal.tenant_id)
    if not query.include_inactive:
        select = select.where(Channel.is_active == True)  # noqa: E712
    if query.type:
        select = select.where(Channel.type == query.type)
    rows, cursor = await paginate(select, Channel, query)
    cipher = _display_cipher(request)
    return Page[ChannelOut](items=[_out(cipher, row) for row in rows], next_cursor=cursor)


@routes.post("/api/v1/channels")
@endpoint(
    "channels.manage",
    body=ChannelIn,
    response=ChannelOut,
    status=201,
    summary="Configure a channel of a type provided by an enabled plugin",
    tags=TAGS,
    errors=(404, 409),
)
async def create_channel(request: web.Request, *, body: ChannelIn) -> ChannelOut:
    principal = current_principal(request)
    services = services_of(request)
    spec = await _spec_for(request, principal.tenant_id, body.type)
    credentials = _validate_credentials(spec, body.credentials)
    identity = identity_of(spec, spec.credentials_model.model_validate(credentials))
    phone = await _phone(request, principal.tenant_id, body.phone) if body.phone else None
    await _check_department(principal.tenant_id, body.default_department_id)
    cipher = _cipher(request)
    channel_id = uuid.uuid4()
    proven = False
    if identity is not None and await _held_by_other(body.type, identity, channel_id):
        # Another channel holds this provider account: provisioning with these
        # credentials, before anything is stored, is the only way to take it.
        info = channel_info(
            services,
            id=channel_id,
            tenant_id=principal.tenant_id,
            type=body.type,
            name=body.name,
            phone=phone,
        )
        proved, detail = await prove_control(
            services, spec, info, spec.credentials_model.model_validate(credentials)
        )
        if proved is None:
            raise refused(detail)
        credentials, proven = proved, True
    released: list[Released] = []
    async with Channel._meta.db.transaction() as transaction:
        if identity is not None:
            await lock_identity(transaction.connection, body.type, identity)
        if proven:
            assert identity is not None
            released = await take_over(transaction.connection, body.type, identity, channel_id)
        try:
            await Channel.insert(
                Channel(
                    id=channel_id,
                    tenant=principal.tenant_id,
                    type=body.type,
                    name=body.name,
                    phone=phone,
                    credentials_encrypted=cipher.encrypt(credentials),
                    default_department=body.default_department_id,
                    provider_identity=identity,
                )
            )
        except asyncpg.UniqueViolationError as exc:
            if is_claim_conflict(exc):  # claimed concurrently: the next try must prove it
                raise refused("another channel claimed this provider account meanwhile") from None
            raise
        await record_audit(
            principal,
            "channel.create",
            "channel",
            channel_id,
            {"type": body.type, "name": body.name},
        )
    await identity_released(services, released)
    if proven:
        await set_channel_state(services, principal.tenant_id, channel_id, PROVISIONED)
    else:
        await provision_channel(services, channel_id)
    row = await get_owned(Channel, principal.tenant_id, channel_id, what="channel")
    return _out(_display_cipher(request), row)


async def _held_by_other(channel_type: str, identity: str, channel_id: uuid.UUID) -> bool:
    async with connection(Channel._meta.db) as conn:
        return await held_by_other(conn, channel_type, identity, channel_id)


@routes.post("/api/v1/channels/{id}/provision")
@endpoint(
    "channels.manage",
    response=ChannelOut,
    summary="Retry provider-side provisioning (e.g. after provisioning_failed)",
    tags=TAGS,
    errors=(409,),
)
async def provision(request: web.Request) -> ChannelOut:
    principal = current_principal(request)
    channel_id = path_id(request, "channel")
    row = await get_owned(Channel, principal.tenant_id, channel_id, what="channel")
    if not row["is_active"]:
        raise Conflict("Activate the channel before provisioning it", code="channel_inactive")
    await provision_channel(services_of(request), channel_id)
    await record_audit(principal, "channel.provision", "channel", channel_id)
    row = await get_owned(Channel, principal.tenant_id, channel_id, what="channel")
    return _out(_display_cipher(request), row)


@routes.get("/api/v1/channels/{id}")
@endpoint("channels.read", response=ChannelOut, summary="Get a channel", tags=TAGS)
async def get_channel(request: web.Request) -> ChannelOut:
    principal = current_principal(request)
    channel_id = path_id(request, "channel")
    row = await get_owned(Channel, principal.tenant_id, channel_id, what="channel")
    return _out(_display_cipher(request), row)


@routes.patch("/api/v1/channels/{id}")
@endpoint(
    "channels.manage",
    body=ChannelPatch,
    response=ChannelOut,
    summary="Update a channel; credentials are merged into the stored ones and revalidated",
    tags=TAGS,
)
async def update_channel(request: web.Request, *, body: ChannelPatch) -> ChannelOut:
    principal = current_principal(request)
    channel_id = path_id(request, "channel")
    row = await get_owned(Channel, principal.tenant_id, channel_id, what="channel")
    values = changes(body, nullable=("phone", "default_department_id"))
    if values.get("phone") is not None:
        values["phone"] = await _phone(request, principal.tenant_id, values["phone"])
    if "default_department_id" in values:
        await _check_department(principal.tenant_id, values["default_department_id"])
        values["default_department"] = values.pop("default_department_id")
    services = services_of(request)
    deactivating = values.get("is_active") is False and row["is_active"]
    activating = values.get("is_active") is True and not row["is_active"]
    claim = None
    if "credentials" in values or activating:
        claim = await _claim_for(request, row, values)
    releasing = await load_channel_adapter(services, channel_id) if deactivating else None
    released: list[Released] = []
    if values:
        fields = sorted("credentials" if key == "credentials_encrypted" else key for key in values)
        fields = [field for field in fields if field != "provider_identity"]
        values["updated_at"] = dt.datetime.now(dt.UTC)
        if activating:  # provisioned again below: not the state deactivation left
            values.update(state="new", state_detail="")
        async with Channel._meta.db.transaction() as transaction:
            if claim is not None:
                await lock_identity(transaction.connection, row["type"], claim.identity)
            if claim is not None and claim.proven:
                released = await take_over(
                    transaction.connection, row["type"], claim.identity, channel_id
                )
            try:
                await Channel.update(values).where(
                    (Channel.tenant == principal.tenant_id) & (Channel.id == channel_id)
                )
            except asyncpg.UniqueViolationError as exc:
                if is_claim_conflict(exc):
                    raise refused(
                        "another channel claimed this provider account meanwhile"
                    ) from None
                raise
            await record_audit(
                principal, "channel.update", "channel", channel_id, {"fields": fields}
            )
        await channel_changed(services, channel_id)  # every field here is held by the adapter
    await identity_released(services, released)
    if releasing is not None:
        await release_channel(services, releasing)
    elif claim is not None and claim.proven:
        await set_channel_state(services, principal.tenant_id, channel_id, PROVISIONED)
    elif activating:
        await provision_channel(services, channel_id)
    row = await get_owned(Channel, principal.tenant_id, channel_id, what="channel")
    return _out(_display_cipher(request), row)


@dataclass(frozen=True)
class _Claim:
    identity: str
    proven: bool  # provisioning with the new config succeeded: take it from its holder


async def _claim_for(
    request: web.Request, row: dict[str, Any], values: dict[str, Any]
) -> _Claim | None:
    """For a PATCH that changes credentials or re-activates: merge the credentials into
    `values` (encrypted) and decide the identity the channel will hold. One that another
    active channel holds needs proof: provisioning with the new config (else 409)."""
    principal = current_principal(request)
    spec = await _spec_for(request, principal.tenant_id, row["type"])
    cipher = _cipher(request)
    try:
        stored = cipher.decrypt(row["credentials_encrypted"])
    except CredentialsUnreadable:
        stored = {}
    if "credentials" in values:
        credentials = _validate_credentials(
            spec, _merge_credentials(stored, values.pop("credentials"))
        )
        values["credentials_encrypted"] = cipher.encrypt(credentials)
    else:
        credentials = stored
    try:
        config = spec.credentials_model.model_validate(credentials)
    except ValidationError:
        return None  # unreadable stored credentials: provisioning will say so
    identity = identity_of(spec, config)
    if identity != row["provider_identity"]:
        values["provider_identity"] = identity
    active = values.get("is_active", row["is_active"])
    if identity is None or not active:
        return None
    if not await _held_by_other(row["type"], identity, row["id"]):
        return _Claim(identity, proven=False)
    services = services_of(request)
    info = channel_info(
        services,
        id=row["id"],
        tenant_id=row["tenant"],
        type=row["type"],
        name=values.get("name", row["name"]),
        phone=values.get("phone", row["phone"]),
    )
    proved, detail = await prove_control(services, spec, info, config)
    if proved is None:
        raise refused(detail)
    values["credentials_encrypted"] = cipher.encrypt(proved)
    return _Claim(identity, proven=True)


@routes.delete("/api/v1/channels/{id}")
@endpoint("channels.manage", status=204, summary="Deactivate a channel", tags=TAGS)
async def delete_channel(request: web.Request) -> None:
    principal = current_principal(request)
    channel_id = path_id(request, "channel")
    await get_owned(Channel, principal.tenant_id, channel_id, Channel.id, what="channel")
    services = services_of(request)
    loaded = await load_channel_adapter(services, channel_id)
    async with Channel._meta.db.transaction():
        await Channel.update(
            {Channel.is_active: False, Channel.updated_at: dt.datetime.now(dt.UTC)}
        ).where((Channel.tenant == principal.tenant_id) & (Channel.id == channel_id))
        await record_audit(principal, "channel.delete", "channel", channel_id)
    await channel_changed(services, channel_id)
    if loaded is not None:
        await release_channel(services, loaded)
