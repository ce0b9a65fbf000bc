"""Building a channel's adapter from its row: plugin lookup, decrypted config, shared client.

Used by the webhook route and the outbound worker, so both see the same adapter rules:
an inactive channel, an uninstalled type or a disabled plugin means "no adapter".
Loaded channels are cached per process (see `guiche.runtime.cache`); whoever changes a
channel row calls `channel_changed` after the commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from guiche.channels import ChannelAdapter, ChannelInfo
from guiche.companies.enablement import enabled_settings
from guiche.foundation.crypto import CredentialCipher, webhook_secret
from guiche.models import Channel
from guiche.runtime.cache import CHANNEL, invalidate, runtime_cache
from guiche.specs import ChannelSpec

if TYPE_CHECKING:
    from guiche.runtime.services import Services


@dataclass(frozen=True)
class ChannelRow:
    """The parts of a `channels` row ingestion needs."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str
    default_department: uuid.UUID | None = None


async def channel_row(channel_id: uuid.UUID) -> ChannelRow | None:
    """The active channel's row as ingestion needs it (no adapter, no enablement check)."""
    row = (
        await Channel.select(Channel.id, Channel.tenant, Channel.type, Channel.default_department)
        .where((Channel.id == channel_id) & (Channel.is_active == True))  # noqa: E712
        .first()
    )
    if row is None:
        return None
    return ChannelRow(row["id"], row["tenant"], row["type"], row["default_department"])


@dataclass(frozen=True)
class LoadedChannel:
    row: ChannelRow
    info: ChannelInfo
    plugin: str
    spec: ChannelSpec
    adapter: ChannelAdapter


def cipher_of(services: Services) -> CredentialCipher:
    cipher = services.extras.get("cipher")
    if cipher is None:
        cipher = CredentialCipher(services.settings.encryption_keys)
        services.extras["cipher"] = cipher
    return cipher


async def load_channel_adapter(
    services: Services,
    channel_id: uuid.UUID,
    *,
    channel_type: str | None = None,
    fresh: bool = False,
) -> LoadedChannel | None:
    """The adapter for an active channel whose plugin is installed and enabled, else None.

    Served from the process's cache (`guiche.runtime.cache`): the same `LoadedChannel`,
    adapter included, is reused by every webhook and send until `channel_changed` (or the
    TTL) drops it. The enabled check is a cached lookup too, so a steady-state call runs
    no query. Misses (unknown, inactive, uninstalled type, plugin disabled) are not
    cached: a channel activated elsewhere is found on its next use. `fresh=True` builds a
    private adapter and leaves the cache alone (provisioning may change its config).
    """
    cache = runtime_cache(services)
    loaded: LoadedChannel | None = None if fresh else cache.get(CHANNEL, channel_id)
    if loaded is not None and _current(loaded, services):
        if loaded.plugin not in await enabled_settings(services, loaded.row.tenant_id):
            return None
    else:
        generation = cache.generation
        loaded = await _build(services, channel_id)  # checks enablement itself
        if loaded is None:
            return None
        if not fresh:
            cache.put(CHANNEL, channel_id, loaded, generation)
    if channel_type is not None and loaded.row.type != channel_type:
        return None
    return loaded


async def channel_changed(services: Services, channel_id: uuid.UUID) -> None:
    """After a commit changing what a `LoadedChannel` holds (name, phone, credentials,
    default department, active flag): every process rebuilds it on next use. State
    changes (`channels.state`) do not need it: the adapter does not hold them."""
    await invalidate(services, CHANNEL, channel_id)


def _current(loaded: LoadedChannel, services: Services) -> bool:
    """A cached adapter still holds this process's shared client and limiter (tests and
    restarts swap `services.http`)."""
    adapter = loaded.adapter
    return getattr(adapter, "http", services.http) is services.http and (
        adapter.limiter is services.limiter
    )


async def _build(services: Services, channel_id: uuid.UUID) -> LoadedChannel | None:
    row = (
        await Channel.select(
            Channel.id,
            Channel.tenant,
            Channel.type,
            Channel.name,
            Channel.phone,
            Channel.credentials_encrypted,
            Channel.default_department,
        )
        .where((Channel.id == channel_id) & (Channel.is_active == True))  # noqa: E712
        .first()
    )
    if row is None:
        return None
    found = services.plugins.channel_type(row["type"])
    if found is None:
        return None
    plugin, spec = found
    # Checked before decrypting, as always: a disabled plugin's channel is never built.
    if plugin not in await enabled_settings(services, row["tenant"]):
        return None
    config = spec.credentials_model.model_validate(
        cipher_of(services).decrypt(row["credentials_encrypted"])
    )
    info = channel_info(
        services,
        id=row["id"],
        tenant_id=row["tenant"],
        type=row["type"],
        name=row["name"],
        phone=row["phone"],
    )
    adapter = make_adapter(services, spec, info, config)
    channel = ChannelRow(row["id"], row["tenant"], row["type"], row["default_department"])
    return LoadedChannel(channel, info, plugin, spec, adapter)


def channel_info(
    services: Services,
    *,
    id: uuid.UUID,
    tenant_id: uuid.UUID,
    type: str,
    name: str,
    phone: str | None,
) -> ChannelInfo:
    """What an adapter is told about its channel, with what core derives for it: the
    public URLs and the core-generated webhook secret."""
    settings = services.settings
    key = settings.secret_key.get_secret_value() if settings.secret_key else None
    return ChannelInfo(
        id=id,
        tenant_id=tenant_id,
        type=type,
        name=name,
        phone=phone,
        public_url=settings.base_url,
        webhook_url=f"{settings.base_url}/webhooks/{type}/{id}",
        webhook_secret=webhook_secret(key, id),
    )


def make_adapter(
    services: Services, spec: ChannelSpec, info: ChannelInfo, config: BaseModel
) -> ChannelAdapter:
    """An adapter with the process's shared client and limiter (also for a channel not
    stored yet, whose provisioning must prove a provider identity first)."""
    adapter = spec.adapter(info, config, http=services.http)
    adapter.limiter = services.limiter  # after construction: older __init__ signatures work
    return adapter


async def active_channels(services: Services, channel_type: str) -> list[LoadedChannel]:
    """Every active channel of a type whose plugin its tenant has enabled (for app-level
    webhooks that route by a provider key, e.g. Meta's phone_number_id)."""
    rows = await Channel.select(Channel.id).where(
        (Channel.type == channel_type) & (Channel.is_active == True)  # noqa: E712
    )
    loaded = [await load_channel_adapter(services, row["id"]) for row in rows]
    return [channel for channel in loaded if channel is not None]
