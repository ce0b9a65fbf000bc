"""A channel's life on the provider's side: set up and provision on create, retry on
demand, disconnect and unload on deactivation (Home Assistant's config-entry idea).

Provisioning talks to the outside world and can fail; the channel row is kept with a
clear `provisioning_failed` state and detail, and `POST /api/v1/channels/{id}/provision`
retries. Whatever an adapter changes in its config while provisioning (e.g. a webhook
secret it generated) is stored back encrypted. A successful provisioning is also the
proof of control over the channel's provider identity (`guiche.channel_host.claims`).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from guiche.channel_host.claims import (
    PROVISIONING_FAILED,
    TAKEN_OVER,
    Released,
    identity_of,
    lock_identity,
    take_over,
)
from guiche.channel_host.runtime import (
    LoadedChannel,
    channel_changed,
    cipher_of,
    load_channel_adapter,
    make_adapter,
)
from guiche.channels import ChannelAdapter, ChannelError, ChannelInfo, ConnectionState
from guiche.foundation.crypto import credentials_to_store
from guiche.provider_http.call_log import provider_call
from guiche.realtime import events as ev
from guiche.realtime.events import PendingEvent, record_events
from guiche.runtime.event_hooks import emit_hooks
from guiche.specs import ChannelSpec

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.channels")

PROVISIONED = "provisioned"


async def set_channel_state(
    services: Services, tenant_id: uuid.UUID, channel_id: uuid.UUID, state: str, detail: str = ""
) -> None:
    """Store a channel's state and tell operators (event + plugin hook)."""
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        await conn.execute(
            "UPDATE channels SET state = $3, state_detail = $4, updated_at = now()"
            " WHERE id = $1 AND tenant = $2",
            channel_id,
            tenant_id,
            state,
            detail[:2000],
        )
        events = await record_events(
            conn,
            [
                PendingEvent(
                    tenant_id=tenant_id,
                    type=ev.CHANNEL_STATE,
                    data={"channel_id": channel_id, "state": state, "detail": detail},
                )
            ],
        )
    await services.bus.publish(events)
    services.spawn(emit_hooks(services, tenant_id, events), name="guiche-channel-state-hooks")


async def _store_config_changes(services: Services, loaded: LoadedChannel, before: dict) -> None:
    after = credentials_to_store(loaded.adapter.config)
    if after != before:
        from guiche.models import Channel

        await Channel.update(
            {Channel.credentials_encrypted: cipher_of(services).encrypt(after)}
        ).where((Channel.id == loaded.row.id) & (Channel.tenant == loaded.row.tenant_id))
        await channel_changed(services, loaded.row.id)


async def provision_channel(services: Services, channel_id: uuid.UUID) -> str:
    """Run the adapter's setup + provision; return the resulting state.

    On a private adapter (`fresh`): provisioning may change its config, which must not
    leak into the instance webhooks and sends share until it is stored.
    """
    loaded = await load_channel_adapter(services, channel_id, fresh=True)
    if loaded is None:
        return "unavailable"
    before = credentials_to_store(loaded.adapter.config)
    detail = await run_provisioning(loaded.adapter)
    if detail is not None:
        await set_channel_state(
            services, loaded.row.tenant_id, channel_id, PROVISIONING_FAILED, detail
        )
        await channel_changed(services, channel_id)  # no longer routable by identity
        return PROVISIONING_FAILED
    await _store_config_changes(services, loaded, before)
    await claim_proven(services, loaded, identity_of(loaded.spec, loaded.adapter.config))
    current = await _current_state(services, channel_id)
    if current in ("new", PROVISIONING_FAILED):
        await set_channel_state(services, loaded.row.tenant_id, channel_id, PROVISIONED)
        return PROVISIONED
    return current


async def run_provisioning(adapter: ChannelAdapter) -> str | None:
    """The adapter's `setup()` + `provision()`; None when they succeeded, else why not."""
    try:
        with provider_call(adapter.channel.tenant_id, adapter.channel.id, "provision"):
            await adapter.setup()
            await adapter.provision()
    except (ChannelError, httpx.HTTPError, OSError, ValueError) as exc:
        detail = getattr(exc, "message", "") or str(exc) or type(exc).__name__
        log.warning(
            "provisioning failed", extra={"channel": str(adapter.channel.id), "error": detail}
        )
        return detail
    return None


async def prove_control(
    services: Services, spec: ChannelSpec, info: ChannelInfo, config: BaseModel
) -> tuple[dict[str, Any] | None, str]:
    """Provision a channel that is not (or not yet, or not with this config) stored, on a
    private adapter: the proof a claimant needs to take another channel's identity.
    Returns the config to store (provisioning may change it) or None, and why not."""
    adapter = make_adapter(services, spec, info, config)
    detail = await run_provisioning(adapter)
    if detail is not None:
        return None, detail
    return credentials_to_store(adapter.config), ""


async def claim_proven(services: Services, loaded: LoadedChannel, identity: str | None) -> None:
    """After `loaded` provisioned successfully: it holds `identity`, taking it from any
    other channel (its provisioning is the proof of control)."""
    if identity is None:
        return
    async with services.db.transaction() as transaction:
        conn = transaction.connection
        await lock_identity(conn, loaded.row.type, identity)
        holds = await conn.fetchval(
            "SELECT provider_identity = $2 AND is_active FROM channels WHERE id = $1",
            loaded.row.id,
            identity,
        )
        if holds:
            return
        released = await take_over(conn, loaded.row.type, identity, loaded.row.id)
    await identity_released(services, released)


async def identity_released(services: Services, released: list[Released]) -> None:
    """Tell the former holders' companies (state event, hooks) and drop their caches."""
    for channel in released:
        await channel_changed(services, channel.channel_id)
        await set_channel_state(
            services, channel.tenant_id, channel.channel_id, PROVISIONING_FAILED, TAKEN_OVER
        )


async def _current_state(services: Services, channel_id: uuid.UUID) -> str:
    from guiche.models import Channel

    row = await Channel.select(Channel.state).where(Channel.id == channel_id).first()
    return row["state"] if row else "unavailable"


async def release_channel(services: Services, loaded: LoadedChannel) -> None:
    """Before deactivation: log out provider sessions and let the adapter clean up."""
    try:
        with provider_call(loaded.row.tenant_id, loaded.row.id, "disconnect"):
            await loaded.adapter.disconnect()
            await loaded.adapter.unload()
    except (ChannelError, httpx.HTTPError, OSError, ValueError) as exc:
        log.warning(
            "channel release failed; deactivating anyway",
            extra={"channel": str(loaded.row.id), "error": str(exc)},
        )
    await set_channel_state(
        services,
        loaded.row.tenant_id,
        loaded.row.id,
        ConnectionState.DISCONNECTED.value,
        "deactivated",
    )
