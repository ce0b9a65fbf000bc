"""Guichê plugin `evolution`: WhatsApp through a company's self-hosted Evolution API v2.

Registered from the entry point `evolution = "guiche_evolution"`; built only on
Guichê's public plugin API (`guiche.plugin`, `guiche.channels`).
"""

from __future__ import annotations

from guiche.channels import StoredMessage
from guiche.plugin import (
    ChannelSpec,
    PermissionGrant,
    PluginContext,
    PluginInfo,
    RouteSpec,
    TaskSpec,
    WebhookRouteSpec,
    hookimpl,
)
from guiche_evolution.adapter import CHANNEL_TYPE, EvolutionAdapter
from guiche_evolution.config import EvolutionConfig, OperatorSettings
from guiche_evolution.media import STORE_MEDIA_TASK, on_message, store_media
from guiche_evolution.routes import (
    PATH_WEBHOOK,
    PERMISSION_QRCODE,
    QRCODE_PATH,
    channel_qrcode,
    path_webhook,
)

NAME = "evolution"
VERSION = "1.0.0"


@hookimpl
def guiche_plugin_info() -> PluginInfo:
    return PluginInfo(
        name=NAME,
        version=VERSION,
        description="WhatsApp through a self-hosted Evolution API v2 server (QR-linked phone)",
        operator_settings=OperatorSettings,
    )


@hookimpl
def guiche_channel_types() -> list[ChannelSpec]:
    return [
        ChannelSpec(
            type=CHANNEL_TYPE,
            adapter=EvolutionAdapter,
            credentials_model=EvolutionConfig,
            capabilities=EvolutionAdapter.capabilities,
            description="WhatsApp via Evolution API v2 (Baileys)",
        )
    ]


@hookimpl
def guiche_permissions() -> list[PermissionGrant]:
    return [
        PermissionGrant(
            PERMISSION_QRCODE,
            ("owner", "admin", "supervisor"),
            "Show an Evolution channel's QR code to link (or relink) its phone",
        )
    ]


@hookimpl
def guiche_routes() -> list[RouteSpec]:
    return [RouteSpec("GET", QRCODE_PATH, channel_qrcode, name="qrcode")]


@hookimpl
def guiche_webhook_routes() -> list[WebhookRouteSpec]:
    return [WebhookRouteSpec("POST", PATH_WEBHOOK, path_webhook)]


@hookimpl
def guiche_tasks() -> list[TaskSpec]:
    return [TaskSpec(STORE_MEDIA_TASK, store_media)]


@hookimpl
async def guiche_on_message(ctx: PluginContext, message: StoredMessage) -> None:
    await on_message(ctx, message)


__all__ = ["CHANNEL_TYPE", "EvolutionAdapter", "EvolutionConfig"]
