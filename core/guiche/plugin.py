"""The public API for plugin authors: the hook marker and the typed specs hooks return.

A plugin imports from here (and `guiche.channels`), never from core internals.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from guiche.auth.principal import current_principal
from guiche.channel_host.claims import channels_by_identity as _by_identity
from guiche.channel_host.runtime import ChannelRow, load_channel_adapter
from guiche.channel_host.runtime import active_channels as _active
from guiche.channel_host.templates import store_provider_templates
from guiche.channels import (
    ChannelInfo,
    ImportOutcome,
    InboundMessage,
    IngestOutcome,
    LoadedChannel,
    WebhookBatch,
)
from guiche.contacts.timeline import messages_by_phone  # chatguru
from guiche.database.engine import use_generic_plans
from guiche.database.sql_migration import sql_migration  # a plugin's SQL migrations
from guiche.foundation.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    ValidationFailed,
)
from guiche.foundation.jsonio import json_response
from guiche.foundation.pgtext import clean_text  # chatguru: text into a plugin's own tables
from guiche.http.endpoint import AUTHENTICATED, PUBLIC, Endpoint, endpoint, require_media_type
from guiche.http.webhook_receiver import (
    WebhookAck,
    provider_errors,
    read_webhook,
    receive_for_channel,
)
from guiche.inbound.bulk import HistoryImport as _HistoryImport
from guiche.inbound.bulk import import_history as _import_history
from guiche.inbound.ingest import ingest
from guiche.media.attachments import message_media as _message_media
from guiche.plugin_host.context import PLUGIN_KEY, PluginContext, context_for_request
from guiche.plugin_host.tenant_context import tenant_plugin_context  # chatguru
from guiche.provider_http import call_log
from guiche.provider_http.client import outbound_client
from guiche.runtime.event_log import LoggedEvent, log_position, read_events, settled_seq
from guiche.runtime.plugin_events import publish_event
from guiche.runtime.services import services_of as _services_of
from guiche.specs import (
    API_VERSION,
    MEDIA_FIELDS,
    Caller,
    ChannelSpec,
    ConsolePage,  # console: pages it adds
    PluginInfo,
    RouteSpec,
    RoutingDecision,
    TaskSpec,
    WebhookRouteSpec,
    hookimpl,
)
from guiche.tenancy.rbac import ROLES, PermissionGrant

# isort: split
# reading a company's people, channels and provider usage (campaigns and others)
from guiche.channel_host.facts import ChannelFacts, channel_facts
from guiche.channel_host.usage import MessageUsage, message_usage
from guiche.contacts.directory import ContactRef, find_contacts

# isort: split
# Baileys' WAMessage JSON, read once for every WhatsApp Web channel (a namespace)
from guiche.channel_host import whatsapp_web

# isort: split
# baileys_bridge: long-running services and plugin data encrypted at rest
from guiche.channel_host.sealed import CredentialsUnreadable, decrypt_json, encrypt_json

# reports: conversation histories, provider usage and the companies that enabled a plugin
from guiche.channel_host.usage import UsageTotal, usage_totals
from guiche.conversations.imported_notes import ImportedNote, add_notes
from guiche.conversations.timeline import (
    INBOUND,
    OUTBOUND,
    ConversationTimeline,
    QueueAgent,
    QueueDepartment,
    QueueSnapshot,
    TimelineStep,
    closed_conversations,
    conversation_timeline,
    conversation_timelines,
    departments_of,
    queue_snapshot,
    reference_names,
)
from guiche.plugin_host.enabled import enabled_contexts
from guiche.specs import CommandSpec, ServiceSpec

if TYPE_CHECKING:
    from guiche.runtime.services import Services

# campaigns: sending from a plugin through the outbox, phone numbers, a company's locale
from guiche.contacts.locale import CompanyLocale, company_locale
from guiche.contacts.phones import InvalidPhone, normalize_phone
from guiche.outbound.direct_send import DirectSent
from guiche.outbound.direct_send import send_direct as send_message


def plugin_name_of(request: Any) -> str | None:
    """The plugin that owns the route serving this request (set by core's router)."""
    return request.get(PLUGIN_KEY)


async def active_channels(services: Services, channel_type: str) -> list[LoadedChannel]:
    """Active channels of `channel_type` (with their adapters) whose tenants enabled the
    plugin: each has `.info` (id, tenant_id, type, ...) and `.adapter` (config decrypted)."""
    return list(await _active(services, channel_type))


async def channels_by_identity(
    services: Services, channel_type: str, identities: set[str], *, ttl: float = 30.0
) -> dict[str, LoadedChannel]:
    """For app-level webhooks that route by a provider key (Meta's phone_number_id): the
    one channel holding each identity (`ChannelAdapter.provider_identity`), loaded like
    `load_channel`'s, for identities that have a routable holder — active, plugin
    enabled, provisioned (never `provisioning_failed`). Cached per process for `ttl`
    seconds, reloaded at once for an unknown identity or any channel change."""
    return dict(await _by_identity(services, channel_type, identities, ttl=ttl))


async def ingest_batch(
    services: Services, channel: LoadedChannel, batch: WebhookBatch
) -> IngestOutcome:
    """Store a `WebhookBatch` for one loaded channel exactly as core's webhook route does
    (dedup, contacts, conversations, statuses, events, routing, hooks); returns once it
    is committed."""
    return (await ingest(services, _row_of(channel), batch)).outcome()


def _row_of(channel: LoadedChannel) -> Any:
    """Core's row for a loaded channel (core's own `LoadedChannel` carries it)."""
    if isinstance(channel, ChannelRow):  # core's own callers and older plugins
        return channel
    row = getattr(channel, "row", None)
    if isinstance(row, ChannelRow):
        return row
    raise TypeError("pass a channel from load_channel, active_channels or channels_by_identity")


async def receive_channel_webhook(request: Any, channel: LoadedChannel) -> dict[str, Any]:
    """In a plugin's own webhook route for one channel (another path, a secret in the URL):
    the same receiver as core's `/webhooks/<type>/<channel_id>` — the adapter's
    `webhook_media_types` (415), `parse_webhook` (401 / 400 on refusal), ingest, and the
    JSON answer after the commit. `channel` is a loaded channel (`load_channel`)."""
    return await receive_for_channel(request, channel)


async def import_history(
    services: Services,
    channel: LoadedChannel,
    messages: Iterable[InboundMessage],
    *,
    batch_size: int = 5000,
) -> ImportOutcome:
    """Store past `InboundMessage`s of one channel in bulk (COPY), skipping every provider
    id already stored (earlier imports, live webhooks); safe to run again. `channel` is a
    loaded channel (`load_channel`, `active_channels`). No per-message events or hooks.
    Where messages land: see `guiche.inbound.bulk`."""
    done = await _import_history(services, _row_of(channel), messages, batch_size=batch_size)
    return ImportOutcome(
        inserted=done.inserted,
        duplicates=done.duplicates,
        conversations_created=done.conversations_created,
        conversations=done.conversations,
    )


def _outcome(done: Any) -> ImportOutcome:
    return ImportOutcome(
        inserted=done.inserted,
        duplicates=done.duplicates,
        conversations_created=done.conversations_created,
        conversations=done.conversations,
    )


class HistoryImport:
    """An `import_history` fed in several calls (see `history_import`)."""

    def __init__(self, session: _HistoryImport) -> None:
        self._session = session

    async def add(self, messages: Iterable[InboundMessage]) -> ImportOutcome:
        """Store these messages like `import_history` does; returns once they are
        committed, with what this call did. Calls may overlap: their senders are
        resolved in call order, their batches claim and write alongside each other's
        (so overlapping calls may commit in any order; await them in order to move a
        checkpoint)."""
        return _outcome(await self._session.add(messages))

    @property
    def total(self) -> ImportOutcome:
        """The whole session's counts so far."""
        return _outcome(self._session.result)


@asynccontextmanager
async def history_import(
    services: Services, channel: LoadedChannel, *, batch_size: int = 5000
) -> AsyncIterator[HistoryImport]:
    """A long history import in several calls — a cataloger that must know each batch
    committed before it moves its own checkpoints — at the cost of one: senders and
    conversations are resolved once for the session, conversations' times are written
    and one `history.imported` event is sent when the block ends (no event if it raises),
    and a call may overlap the previous one's COPY. Same guarantees as `import_history`:
    each call is idempotent, a failed one is simply made again."""
    session = _HistoryImport(services, _row_of(channel), batch_size=batch_size)
    try:
        yield HistoryImport(session)
    except BaseException:
        await session.abort()
        raise
    await session.close()


async def plugin_context(request: Any) -> PluginContext:
    """Inside a plugin's own route: the caller's tenant, this plugin's validated settings
    for that tenant, services and logger (the same context event hooks receive)."""
    return await context_for_request(request)


def caller_of(request: Any) -> Caller:
    """Inside a plugin's own (authenticated) route: who is calling. 401 when nobody is."""
    principal = current_principal(request)
    return Caller(
        tenant_id=principal.tenant_id,
        role=principal.role,
        permissions=principal.permissions,
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
    )


def require_json(request: Any) -> None:
    """In a provider-facing route: answer 415 (error shape) unless the body is declared
    JSON (`application/json`, with or without `; charset=...`, or a `+json` type)."""
    require_media_type(request, ("application/json",))


def services_of(request: Any) -> Services:
    """The shared services (db, http, limiter, tasks, ...) from inside any plugin route,
    including provider-facing webhook routes, which have no tenant context."""
    return _services_of(request)


async def load_channel(
    services: Services, channel_id: uuid.UUID, *, tenant_id: uuid.UUID | None = None
) -> LoadedChannel | None:
    """One active channel with its adapter (same shape as `active_channels` items), or None
    when it is inactive, its plugin is not installed or enabled, or — with `tenant_id` —
    it belongs to another tenant (so a plugin route can answer 404 for it)."""
    loaded = await load_channel_adapter(services, channel_id)
    if loaded is None or (tenant_id is not None and loaded.row.tenant_id != tenant_id):
        return None
    return loaded


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
    return await store_provider_templates(
        tenant_id, channel_id, templates, retire_missing=retire_missing
    )


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
    principal = current_principal(request) if request is not None else None
    row = await _message_media(services, tenant_id, message_id, principal=principal)
    return {key: row[key] for key in MEDIA_FIELDS}  # never where core stores it


@contextmanager
def provider_call(channel: ChannelInfo, operation: str) -> Iterator[None]:
    """Log the provider calls made inside the block (through the adapter's `http`) in
    the channel's call log as `operation`. Core already does this around every adapter
    method it calls; use it in a plugin's own routes and tasks that call the provider
    for one channel (e.g. fetching a QR code)."""
    with call_log.provider_call(channel.tenant_id, channel.id, operation):
        yield


__all__ = [
    "API_VERSION",
    "AUTHENTICATED",
    "MEDIA_FIELDS",
    "PUBLIC",
    "ROLES",
    "ApiError",
    "BadRequest",
    "Caller",
    "ChannelSpec",
    "Conflict",
    "ConsolePage",  # console
    "Endpoint",
    "Forbidden",
    "HistoryImport",
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
    "caller_of",
    "channels_by_identity",
    "endpoint",
    "history_import",
    "hookimpl",
    "import_history",
    "ingest_batch",
    "json_response",
    "load_channel",
    "message_media",
    "messages_by_phone",  # chatguru
    "outbound_client",
    "plugin_context",
    "plugin_name_of",
    "provider_call",
    "provider_errors",
    "publish_event",
    "read_webhook",
    "receive_channel_webhook",
    "require_json",
    "services_of",
    "tenant_plugin_context",  # chatguru
    "upsert_templates",
]
__all__ += [  # campaigns:
    "CompanyLocale",
    "DirectSent",
    "InvalidPhone",
    "company_locale",
    "normalize_phone",
    "send_message",
    "use_generic_plans",
]
# baileys_bridge:
__all__ += ["CredentialsUnreadable", "ServiceSpec", "decrypt_json", "encrypt_json"]
__all__ += ["CommandSpec", "ImportedNote", "add_notes"]

# reports:
__all__ += [
    "INBOUND",
    "OUTBOUND",
    "ConversationTimeline",
    "QueueAgent",
    "QueueDepartment",
    "QueueSnapshot",
    "TimelineStep",
    "UsageTotal",
    "closed_conversations",
    "conversation_timeline",
    "conversation_timelines",
    "departments_of",
    "enabled_contexts",
    "queue_snapshot",
    "reference_names",
    "usage_totals",
]

# webhooks: the tenant's event log for log-driven consumers, and secrets kept at rest
__all__ += ["LoggedEvent", "log_position", "read_events", "settled_seq"]
__all__ += [
    "ChannelFacts",
    "ContactRef",
    "MessageUsage",
    "channel_facts",
    "find_contacts",
    "message_usage",
]
__all__ += ["whatsapp_web"]
__all__ += ["clean_text", "sql_migration"]
