"""The public API for plugin authors: the hook marker and the typed specs hooks return.

A plugin imports from here (and `guiche.channels`), never from core internals.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from guiche.channels import ChannelAdapter
from guiche.http_client import outbound_client
from guiche.rbac import ROLES, PermissionGrant
from guiche.web.endpoint import AUTHENTICATED, PUBLIC, Endpoint, endpoint
from guiche.web.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    ValidationFailed,
)
from guiche.web.jsonio import json_response
from guiche.web.webhook_receiver import WebhookAck, provider_errors, read_webhook

if TYPE_CHECKING:
    from guiche.services import Services

PROJECT = "guiche"
API_VERSION = 1

hookimpl = pluggy.HookimplMarker(PROJECT)

#: What `message_media` tells a plugin about a stored file.
MEDIA_FIELDS = ("id", "mime_type", "size", "filename", "sha256", "created_at")


@dataclass(frozen=True)
class PluginInfo:
    """What a plugin says about itself. `name` must equal its entry-point name."""

    name: str
    version: str
    description: str = ""
    api_version: int = API_VERSION
    settings_model: type[BaseModel] | None = None
    requires: tuple[str, ...] = ()
    operator_settings: type[BaseSettings] | None = None
    """The deployment-wide environment variables the plugin reads, as one pydantic-settings
    model (`guiche.config.env_names` lists them; `.env.example` must name each)."""


@dataclass(frozen=True)
class RouteSpec:
    """A plugin route, mounted under `/api/v1/plugins/<plugin>/<path>` and tenant-gated.

    Decorate `handler` with `guiche.plugin.endpoint(...)` to declare its permission.
    """

    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    name: str | None = None


@dataclass(frozen=True)
class WebhookRouteSpec:
    """A provider-facing route under `/webhooks/<plugin>/<path>`: no user auth, no gating."""

    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class TaskSpec:
    """A background task registered on the broker as `<plugin>.<name>`.

    `func` is `async def`; it gets the kicked (JSON) arguments, plus `services=` (the
    process's `Services`) when it declares a parameter by that name. Delivery is
    at-least-once: make it idempotent. `schedule`: e.g. `({"interval": 5},)` or
    `({"cron": "*/10 * * * *"},)`, run by the one scheduler.
    """

    name: str
    func: Callable[..., Awaitable[Any]]
    schedule: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ChannelSpec:
    """A channel type a plugin provides: its `guiche.channels.ChannelAdapter` subclass, the
    pydantic model of its credentials, and capabilities (e.g. CAP_CUSTOMER_CARE_WINDOW)."""

    type: str
    adapter: type[ChannelAdapter]
    credentials_model: type[BaseModel]
    capabilities: frozenset[str] = field(default_factory=frozenset)
    description: str = ""


@dataclass(frozen=True)
class RoutingDecision:
    """What `guiche_route_inbound` returns: the department to queue in, or a bot taking it."""

    department_id: uuid.UUID | None = None
    bot: bool = False


@dataclass
class PluginContext:
    """Passed to event hooks: whose event it is, the plugin's settings for that tenant, services."""

    tenant_id: uuid.UUID
    plugin: str
    settings: BaseModel | dict[str, Any]
    services: Services
    logger: logging.Logger


def plugin_name_of(request: Any) -> str | None:
    """The plugin that owns the route serving this request (set by core's router)."""
    from guiche.plugins.context import PLUGIN_KEY

    return request.get(PLUGIN_KEY)


async def active_channels(services: Services, channel_type: str) -> list[Any]:
    """Active channels of `channel_type` (with their adapters) whose tenants enabled the plugin.

    Each item has `.row` (id, tenant_id, type), `.info`, `.adapter` (config decrypted)."""
    from guiche.channel_runtime import active_channels as _active

    return await _active(services, channel_type)


async def channels_by_identity(
    services: Services, channel_type: str, identities: set[str], *, ttl: float = 30.0
) -> dict[str, Any]:
    """For app-level webhooks that route by a provider key (Meta's phone_number_id): the
    one channel holding each identity (`ChannelAdapter.provider_identity`), loaded like
    `load_channel`'s, for identities that have a routable holder — active, plugin
    enabled, provisioned (never `provisioning_failed`). Cached per process for `ttl`
    seconds, reloaded at once for an unknown identity or any channel change."""
    from guiche.channel_claims import channels_by_identity as _by_identity

    return dict(await _by_identity(services, channel_type, identities, ttl=ttl))


async def ingest_batch(services: Services, channel: Any, batch: Any) -> Any:
    """Store a `WebhookBatch` for one loaded channel exactly as core's webhook route does
    (dedup, contacts, conversations, statuses, events, routing, hooks)."""
    from guiche.inbound.ingest import ingest

    return await ingest(services, channel.row, batch)


async def receive_channel_webhook(request: Any, channel: Any) -> dict[str, Any]:
    """In a plugin's own webhook route for one channel (another path, a secret in the URL):
    the same receiver as core's `/webhooks/<type>/<channel_id>` — the adapter's
    `webhook_media_types` (415), `parse_webhook` (401 / 400 on refusal), ingest, and the
    JSON answer after the commit. `channel` is a loaded channel (`load_channel`)."""
    from guiche.inbound.webhooks import receive_for_channel

    return await receive_for_channel(request, channel)


async def import_history(
    services: Services, channel: Any, messages: Any, *, batch_size: int = 5000
) -> Any:
    """Store past `InboundMessage`s of one channel in bulk (COPY), skipping every provider
    id already stored (earlier imports, live webhooks); safe to run again. `channel` is a
    loaded channel (`load_channel`, `active_channels`) or its `.row`. No per-message
    events or hooks; returns `BulkResult(inserted, duplicates, conversations_created)`.
    Where messages land: see `guiche.inbound.bulk`."""
    from guiche.inbound.bulk import import_history as _import_history

    row = getattr(channel, "row", channel)
    return await _import_history(services, row, messages, batch_size=batch_size)


async def plugin_context(request: Any) -> PluginContext:
    """Inside a plugin's own route: the caller's tenant, this plugin's validated settings
    for that tenant, services and logger (the same context event hooks receive)."""
    from guiche.plugins.context import context_for_request

    return await context_for_request(request)


def require_json(request: Any) -> None:
    """In a provider-facing route: answer 415 (error shape) unless the body is declared
    JSON (`application/json`, with or without `; charset=...`, or a `+json` type)."""
    from guiche.web.endpoint import require_media_type

    require_media_type(request, ("application/json",))


def services_of(request: Any) -> Services:
    """The shared services (db, http, limiter, tasks, ...) from inside any plugin route,
    including provider-facing webhook routes, which have no tenant context."""
    from guiche.services import services_of as _services_of

    return _services_of(request)


async def load_channel(
    services: Services, channel_id: uuid.UUID, *, tenant_id: uuid.UUID | None = None
) -> Any | None:
    """One active channel with its adapter (same shape as `active_channels` items), or None
    when it is inactive, its plugin is not installed or enabled, or — with `tenant_id` —
    it belongs to another tenant (so a plugin route can answer 404 for it)."""
    from guiche.channel_runtime import load_channel_adapter

    loaded = await load_channel_adapter(services, channel_id)
    if loaded is None or (tenant_id is not None and loaded.row.tenant_id != tenant_id):
        return None
    return loaded


_UPSERT_TEMPLATE = """
INSERT INTO templates (tenant, channel, name, language, category, body, components, status,
                       external_id)
VALUES ({}, {}, {}, {}, {}, {}, {}::jsonb, {}, {})
ON CONFLICT (tenant, coalesce(channel, '00000000-0000-0000-0000-000000000000'), name, language)
DO UPDATE SET category = EXCLUDED.category, body = EXCLUDED.body,
              components = EXCLUDED.components, status = EXCLUDED.status,
              external_id = EXCLUDED.external_id, updated_at = now()
"""

_RETIRE_TEMPLATES = """
UPDATE templates SET status = 'DELETED', updated_at = now()
WHERE tenant = {} AND channel = {} AND status <> 'DELETED'
  AND NOT ((name || '/' || language) = ANY({}::text[]))
RETURNING id
"""


async def upsert_templates(
    services: Services,
    tenant_id: uuid.UUID,
    channel_id: uuid.UUID,
    templates: list[dict[str, Any]],
    *,
    retire_missing: bool = False,
) -> dict[str, int]:
    """Write a provider's templates for one of the tenant's channels into core's `templates`.

    Each item: `name`, `language`, optional `category`, `body`, `components` (list),
    `status` (e.g. APPROVED, PAUSED; only APPROVED ones can be sent) and `external_id`.
    A (name, language) already stored for the channel is updated. With `retire_missing`,
    the channel's templates absent from `templates` become status DELETED (a full sync).
    Returns `{"upserted": n, "retired": m}`. One transaction; the channel must be the
    tenant's (else `NotFound`).
    """
    import orjson

    from guiche.models import Channel, Template

    owned = await Channel.exists().where((Channel.tenant == tenant_id) & (Channel.id == channel_id))
    if not owned:
        raise NotFound("channel not found")
    retired: list[Any] = []
    async with Template._meta.db.transaction():
        for item in templates:
            await Template.raw(
                _UPSERT_TEMPLATE,
                tenant_id,
                channel_id,
                str(item["name"])[:200],
                str(item.get("language") or "pt_BR")[:20],
                str(item.get("category") or "UTILITY").upper()[:40],
                str(item.get("body") or ""),
                orjson.dumps(item.get("components") or []).decode(),
                str(item.get("status") or "APPROVED").upper()[:30],
                (str(item["external_id"])[:200] if item.get("external_id") else None),
            )
        if retire_missing:
            keep = [f"{item['name']}/{item.get('language') or 'pt_BR'}" for item in templates]
            retired = await Template.raw(_RETIRE_TEMPLATES, tenant_id, channel_id, keep)
    return {"upserted": len(templates), "retired": len(retired)}


async def message_media(
    services: Services, tenant_id: uuid.UUID, message_id: uuid.UUID, *, request: Any = None
) -> dict[str, Any]:
    """The stored file (`MEDIA_FIELDS`: id, mime_type, size, filename, sha256,
    created_at) of an inbound message's attachment, fetched once through its channel's
    `fetch_media` and kept in core storage (served by `GET /api/v1/media/{id}`; core's
    `GET /api/v1/messages/{id}/media` already offers it to every channel's messages).

    With `request` (inside a route), the message must also be in a conversation the
    caller may see. Raises `NotFound` / `ServiceUnavailable`-shaped API errors.
    """
    from guiche.auth.principal import current_principal
    from guiche.inbound.media import message_media as _message_media

    principal = current_principal(request) if request is not None else None
    row = await _message_media(services, tenant_id, message_id, principal=principal)
    return {key: row[key] for key in MEDIA_FIELDS}  # never where core stores it


__all__ = [
    "API_VERSION",
    "AUTHENTICATED",
    "MEDIA_FIELDS",
    "PUBLIC",
    "ROLES",
    "ApiError",
    "BadRequest",
    "ChannelSpec",
    "Conflict",
    "Endpoint",
    "Forbidden",
    "NotFound",
    "PermissionGrant",
    "PluginContext",
    "PluginInfo",
    "RouteSpec",
    "RoutingDecision",
    "TaskSpec",
    "TooManyRequests",
    "ValidationFailed",
    "WebhookAck",
    "WebhookRouteSpec",
    "active_channels",
    "channels_by_identity",
    "endpoint",
    "hookimpl",
    "import_history",
    "ingest_batch",
    "json_response",
    "load_channel",
    "message_media",
    "outbound_client",
    "plugin_context",
    "plugin_name_of",
    "provider_errors",
    "read_webhook",
    "receive_channel_webhook",
    "require_json",
    "services_of",
    "upsert_templates",
]
