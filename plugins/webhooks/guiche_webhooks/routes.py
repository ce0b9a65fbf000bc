"""The admin API under `/api/v1/plugins/webhooks/`: subscriptions (the secret is shown
once, at creation and rotation), their delivery log, replay and redelivery."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guiche.plugin import (
    NotFound,
    RouteSpec,
    ValidationFailed,
    caller_of,
    encrypt_json,
    endpoint,
    plugin_context,
    read_events,
)
from guiche_webhooks import delivery, store
from guiche_webhooks.netguard import GuardedResolver, TargetRefused, check_url

MANAGE = "webhooks.manage"
TAGS = ("webhooks",)
TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?$")
EVENT_ID = re.compile(r"^(?:evt_)?([0-9]{1,18})$")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _types(value: list[str]) -> list[str]:
    for name in value:
        if not TYPE_PATTERN.match(name):
            raise ValueError(
                f"{name!r} is not an event type (e.g. 'message.new') or prefix ('conversation.*')"
            )
    return sorted(set(value))


class SubscriptionIn(_Body):
    url: str = Field(min_length=1, max_length=2000)
    description: str = Field("", max_length=200)
    event_types: list[str] = Field(
        default_factory=list, max_length=50,
        description="Names (`message.new`) or prefixes (`conversation.*`); empty: every event.",
    )
    channel_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)
    department_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)
    active: bool = True

    _check_types = field_validator("event_types")(_types)


class SubscriptionPatch(_Body):
    url: str | None = Field(None, min_length=1, max_length=2000)
    description: str | None = Field(None, max_length=200)
    event_types: list[str] | None = Field(None, max_length=50)
    channel_ids: list[uuid.UUID] | None = Field(None, max_length=100)
    department_ids: list[uuid.UUID] | None = Field(None, max_length=100)
    active: bool | None = Field(None, description="`true` also resumes a paused subscription.")

    @field_validator("event_types")
    @classmethod
    def _check(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _types(value)


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    channel_ids: list[uuid.UUID]
    department_ids: list[uuid.UUID]
    active: bool
    state: str = Field(description="`active`, `failing` (retrying), `paused` or `inactive`.")
    paused_at: dt.datetime | None
    paused_reason: str | None
    failures: int
    failing_since: dt.datetime | None
    next_attempt_at: dt.datetime
    last_error: str | None
    cursor: int = Field(description="The last event sequence delivered (or skipped).")
    previous_secret_until: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="The signing secret. Shown only now: store it.")


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class SecretRotated(BaseModel):
    secret: str = Field(description="The new signing secret. Shown only now.")
    previous_secret_until: dt.datetime = Field(
        description="Until then the old secret also signs (a second `v1=`)."
    )


class ReplayIn(_Body):
    from_seq: int | None = Field(None, ge=1, le=2**63 - 1)
    since: dt.datetime | None = None

    @model_validator(mode="after")
    def _one(self) -> ReplayIn:
        if (self.from_seq is None) == (self.since is None):
            raise ValueError("give exactly one of from_seq and since")
        return self


class RedeliverIn(_Body):
    event_id: str = Field(min_length=1, max_length=40, description="`evt_<seq>`")


class DeliveryOut(BaseModel):
    id: uuid.UUID
    created_at: dt.datetime
    kind: str
    event_ids: list[str]
    succeeded: bool
    status_code: int | None
    latency_ms: int | None
    error: str | None
    response_body: str | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class DeliveriesQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=100)


class RedeliveryOut(BaseModel):
    succeeded: bool
    status_code: int | None
    error: str | None


def _state(row: dict[str, Any]) -> str:
    if not row["active"]:
        return "inactive"
    if row["paused_at"] is not None:
        return "paused"
    return "failing" if row["failures"] else "active"


def _out(row: dict[str, Any]) -> SubscriptionOut:
    return SubscriptionOut.model_validate({**row, "state": _state(row)})


def _sub_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["subscription_id"])
    except ValueError:
        raise NotFound("No such webhook subscription.") from None


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


async def checked_url(url: str) -> str:
    """422 unless the URL passes the SSRF rules now (syntax, and what its name resolves to)."""
    try:
        check_url(url)
        host = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if not name.startswith("[") and not name.replace(".", "").isdigit():
            resolver = GuardedResolver()
            try:
                await asyncio.wait_for(resolver.resolve(name, 0, 0), 10)
            finally:
                await resolver.close()
    except TargetRefused as exc:
        raise ValidationFailed(
            f"This URL is not allowed: {exc}", details={"url": str(exc)}, code="url_not_allowed"
        ) from None
    except (OSError, TimeoutError) as exc:
        raise ValidationFailed(
            f"This URL's host does not resolve: {exc}", details={"url": str(exc)},
            code="url_not_allowed",
        ) from None
    return url


@endpoint(MANAGE, body=SubscriptionIn, response=SubscriptionCreated, status=201,
          summary="Subscribe a URL to the company's events (the secret is shown once)", tags=TAGS)
async def create(request: web.Request, *, body: SubscriptionIn) -> SubscriptionCreated:
    ctx = await plugin_context(request)
    url = await checked_url(body.url)
    secret = new_secret()
    row = await store.create_subscription(
        ctx.services, caller_of(request).tenant_id, url=url, description=body.description,
        event_types=body.event_types, channel_ids=body.channel_ids,
        department_ids=body.department_ids, active=body.active,
        sealed_secret=encrypt_json(ctx.services, {"v": secret}),
    )
    return SubscriptionCreated.model_validate({**row, "state": _state(row), "secret": secret})


@endpoint(MANAGE, response=SubscriptionList, summary="The company's webhook subscriptions",
          tags=TAGS)
async def list_all(request: web.Request) -> SubscriptionList:
    ctx = await plugin_context(request)
    rows = await store.list_subscriptions(ctx.services, caller_of(request).tenant_id)
    return SubscriptionList(items=[_out(row) for row in rows])


@endpoint(MANAGE, response=SubscriptionOut, summary="One webhook subscription", tags=TAGS)
async def get_one(request: web.Request) -> SubscriptionOut:
    ctx = await plugin_context(request)
    return _out(await store.get_subscription(ctx.services, ctx.tenant_id, _sub_id(request)))


@endpoint(MANAGE, body=SubscriptionPatch, response=SubscriptionOut,
          summary="Change a subscription; `active: true` resumes a paused one", tags=TAGS)
async def update(request: web.Request, *, body: SubscriptionPatch) -> SubscriptionOut:
    ctx = await plugin_context(request)
    sub_id = _sub_id(request)
    changes = body.model_dump(exclude_unset=True)
    for name in ("url", "description", "event_types", "channel_ids", "department_ids", "active"):
        if name in changes and changes[name] is None:
            raise ValidationFailed("null is not a value here", details={name: "null"})
    if "url" in changes:
        changes["url"] = await checked_url(changes["url"])
    if not changes:
        return _out(await store.get_subscription(ctx.services, ctx.tenant_id, sub_id))
    return _out(await store.update_subscription(ctx.services, ctx.tenant_id, sub_id, changes))


@endpoint(MANAGE, summary="Delete a subscription (its delivery log goes with it)", tags=TAGS)
async def delete(request: web.Request) -> dict[str, Any]:
    ctx = await plugin_context(request)
    sub_id = _sub_id(request)
    await store.delete_subscription(ctx.services, ctx.tenant_id, sub_id)
    return {"id": str(sub_id), "deleted": True}


@endpoint(MANAGE, response=SecretRotated,
          summary="A new signing secret; the old one keeps signing for the overlap", tags=TAGS)
async def rotate(request: web.Request) -> SecretRotated:
    ctx = await plugin_context(request)
    secret = new_secret()
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=ctx.settings.secret_overlap_hours)
    sealed = encrypt_json(ctx.services, {"v": secret})
    await store.rotate_secret(ctx.services, ctx.tenant_id, _sub_id(request), sealed, until)
    return SecretRotated(secret=secret, previous_secret_until=until)


@endpoint(MANAGE, query=DeliveriesQuery, response=DeliveryPage,
          summary="A subscription's delivery log, newest first", tags=TAGS)
async def deliveries(request: web.Request, *, query: DeliveriesQuery) -> DeliveryPage:
    ctx = await plugin_context(request)
    sub_id = _sub_id(request)
    await store.get_subscription(ctx.services, ctx.tenant_id, sub_id)  # 404 if not ours
    before = None
    if query.cursor:
        try:
            stamp, _, ident = query.cursor.partition("_")
            before = (dt.datetime.fromisoformat(stamp), uuid.UUID(ident))
        except ValueError:
            raise ValidationFailed("bad cursor", details={"cursor": "invalid"}) from None
    rows = await store.list_deliveries(
        ctx.services, ctx.tenant_id, sub_id, limit=query.limit, before=before
    )
    items = [
        DeliveryOut.model_validate(
            {**row, "event_ids": [delivery.event_id(seq) for seq in row["seqs"]]}
        )
        for row in rows
    ]
    last = rows[-1] if len(rows) == query.limit else None
    cursor = f"{last['created_at'].isoformat()}_{last['id']}" if last else None
    return DeliveryPage(items=items, next_cursor=cursor)


@endpoint(MANAGE, body=ReplayIn, response=SubscriptionOut,
          summary="Deliver again from a sequence number or a time", tags=TAGS)
async def replay(request: web.Request, *, body: ReplayIn) -> SubscriptionOut:
    ctx = await plugin_context(request)
    sub_id = _sub_id(request)
    await store.get_subscription(ctx.services, ctx.tenant_id, sub_id)
    if body.from_seq is not None:
        cursor = body.from_seq - 1
    else:
        assert body.since is not None
        cursor = await store.seq_before(ctx.services, ctx.tenant_id, body.since)
    return _out(await store.set_cursor(ctx.services, ctx.tenant_id, sub_id, cursor))


@endpoint(MANAGE, body=RedeliverIn, response=RedeliveryOut,
          summary="Send one event to the subscription again, now", tags=TAGS)
async def redeliver(request: web.Request, *, body: RedeliverIn) -> RedeliveryOut:
    ctx = await plugin_context(request)
    sub = await store.get_subscription(ctx.services, ctx.tenant_id, _sub_id(request))
    match = EVENT_ID.match(body.event_id)
    events = []
    if match:
        seq = int(match.group(1))
        events = await read_events(ctx.services, ctx.tenant_id, after=seq - 1, limit=1, until=seq)
    if not events:
        raise NotFound("No such event in the company's log.", details={"event_id": body.event_id})
    outcome = await delivery.redeliver(ctx.services, sub, ctx.settings, events[0])
    return RedeliveryOut(
        succeeded=outcome.ok, status_code=outcome.status_code, error=outcome.error
    )


ROUTES = [
    RouteSpec("POST", "subscriptions", create, name="create"),
    RouteSpec("GET", "subscriptions", list_all, name="list"),
    RouteSpec("GET", "subscriptions/{subscription_id}", get_one, name="get"),
    RouteSpec("PATCH", "subscriptions/{subscription_id}", update, name="update"),
    RouteSpec("DELETE", "subscriptions/{subscription_id}", delete, name="delete"),
    RouteSpec("POST", "subscriptions/{subscription_id}/rotate-secret", rotate, name="rotate"),
    RouteSpec("GET", "subscriptions/{subscription_id}/deliveries", deliveries, name="deliveries"),
    RouteSpec("POST", "subscriptions/{subscription_id}/replay", replay, name="replay"),
    RouteSpec("POST", "subscriptions/{subscription_id}/redeliver", redeliver, name="redeliver"),
]
