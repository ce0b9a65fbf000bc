"""The demo company's sandbox channel, so a fresh `guiche run` can be tried end to end.

When the first-party `sandbox` plugin is installed (it is, with Guichê), `guiche run`
enables it for the demo company (once: disabling it later is respected) and keeps one
active sandbox channel there; the start-up banner prints the `curl` that posts a
customer's message to its webhook. Idempotent: a second start finds the channel.
Not installed or blocked: no channel, no banner line.
"""

from __future__ import annotations

import shlex
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from guiche.channel_host.lifecycle import provision_channel
from guiche.channel_host.runtime import channel_info, cipher_of
from guiche.companies.enablement import enabled_settings, plugins_changed
from guiche.models import Channel, TenantPlugin

if TYPE_CHECKING:
    from guiche.runtime.services import Services

SANDBOX = "sandbox"
DEMO_CHANNEL_NAME = "WhatsApp (sandbox)"
SECRET_HEADER = "X-Guiche-Webhook-Secret"
SAMPLE_MESSAGE = {
    "from": "+5511987654321",
    "name": "Maria Souza",
    "text": "Olá! Meu pedido chegou?",
}


@dataclass(frozen=True)
class DemoChannel:
    id: uuid.UUID
    webhook_url: str
    webhook_secret: str

    def curl(self) -> str:
        """A customer's message, posted as the channel's provider would post it."""
        return (
            f"curl -s -X POST {self.webhook_url} "
            f"-H {shlex.quote(f'{SECRET_HEADER}: {self.webhook_secret}')} "
            f"-H 'Content-Type: application/json' "
            f"-d {shlex.quote(orjson.dumps(SAMPLE_MESSAGE).decode())}"
        )


async def seed_demo_channel(services: Services, tenant_id: uuid.UUID) -> DemoChannel | None:
    """Enable `sandbox` for the demo company and ensure it has an active sandbox channel."""
    found = services.plugins.channel_type(SANDBOX)
    if found is None:
        return None
    plugin, _spec = found
    await TenantPlugin.raw(
        "INSERT INTO tenant_plugins (tenant, plugin, enabled, settings, updated_at) "
        "VALUES ({}, {}, true, {}::jsonb, now()) ON CONFLICT (tenant, plugin) DO NOTHING",
        tenant_id,
        plugin,
        "{}",
    )
    await plugins_changed(services, tenant_id)
    if plugin not in await enabled_settings(services, tenant_id):
        return None  # an operator disabled it for the demo company: respected
    row = (
        await Channel.select(Channel.id)
        .where(
            (Channel.tenant == tenant_id) & (Channel.type == SANDBOX) & (Channel.is_active == True)  # noqa: E712
        )
        .order_by(Channel.created_at)
        .first()
    )
    if row is None:
        channel_id = uuid.uuid4()
        await Channel.insert(
            Channel(
                id=channel_id,
                tenant=tenant_id,
                type=SANDBOX,
                name=DEMO_CHANNEL_NAME,
                credentials_encrypted=cipher_of(services).encrypt({}),
            )
        )
        await provision_channel(services, channel_id)
    else:
        channel_id = row["id"]
    info = channel_info(
        services,
        id=channel_id,
        tenant_id=tenant_id,
        type=SANDBOX,
        name=DEMO_CHANNEL_NAME,
        phone=None,
    )
    return DemoChannel(
        id=channel_id, webhook_url=info.webhook_url, webhook_secret=info.webhook_secret
    )
