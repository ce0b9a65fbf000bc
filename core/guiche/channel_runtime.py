"""Building a channel's adapter from its row: plugin lookup, decrypted config, shared client.

Used by the webhook route and the outbound worker, so both see the same adapter rules:
an inactive channel, an uninstalled type or a disabled plugin means "no adapter".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guiche.channels import ChannelAdapter, ChannelInfo
from guiche.crypto import CredentialCipher
from guiche.inbound.ingest import ChannelRow
from guiche.models import Channel
from guiche.plugin import ChannelSpec
from guiche.plugins.enablement import is_enabled

if TYPE_CHECKING:
    from guiche.services import Services


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
    services: Services, channel_id: uuid.UUID, *, channel_type: str | None = None
) -> LoadedChannel | None:
    """The adapter for an active channel whose plugin is installed and enabled, else None."""
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
    if row is None or (channel_type is not None and row["type"] != channel_type):
        return None
    found = services.plugins.channel_type(row["type"])
    if found is None:
        return None
    plugin, spec = found
    if not await is_enabled(row["tenant"], plugin):
        return None
    config = spec.credentials_model.model_validate(
        cipher_of(services).decrypt(row["credentials_encrypted"])
    )
    info = ChannelInfo(
        id=row["id"],
        tenant_id=row["tenant"],
        type=row["type"],
        name=row["name"],
        phone=row["phone"],
    )
    adapter = spec.adapter(info, config, http=services.http)
    adapter.limiter = services.limiter  # after construction: older __init__ signatures work
    channel = ChannelRow(row["id"], row["tenant"], row["type"], row["default_department"])
    return LoadedChannel(channel, info, plugin, spec, adapter)


async def active_channels(services: Services, channel_type: str) -> list[LoadedChannel]:
    """Every active channel of a type whose plugin its tenant has enabled (for app-level
    webhooks that route by a provider key, e.g. Meta's phone_number_id)."""
    rows = await Channel.select(Channel.id).where(
        (Channel.type == channel_type) & (Channel.is_active == True)  # noqa: E712
    )
    loaded = [await load_channel_adapter(services, row["id"]) for row in rows]
    return [channel for channel in loaded if channel is not None]
