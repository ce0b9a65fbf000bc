"""Guichê plugin `meta_cloud`: WhatsApp through Meta's Cloud API (Graph API).

Built only on guiche's public plugin API. Provides the `meta_cloud` channel type, the
app-level webhook `/webhooks/meta_cloud/app`, template sync (a route and a daily task)
and inbound media download. See plugins/meta_cloud/README.md for the operator's guide.
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
from guiche_meta_cloud import media, routes, templates
from guiche_meta_cloud.adapter import CAPABILITIES, MetaCloudAdapter
from guiche_meta_cloud.config import AppWebhookSettings, MetaCloudConfig

NAME = "meta_cloud"
CHANNEL_TYPE = "meta_cloud"
__version__ = "1.0.0"


@hookimpl
def guiche_plugin_info() -> PluginInfo:
    return PluginInfo(
        name=NAME,
        version=__version__,
        description="WhatsApp Business via Meta's Cloud API: webhooks, sending, templates, media",
        operator_settings=AppWebhookSettings,
    )


@hookimpl
def guiche_channel_types() -> list[ChannelSpec]:
    return [
        ChannelSpec(
            type=CHANNEL_TYPE,
            adapter=MetaCloudAdapter,
            credentials_model=MetaCloudConfig,
            capabilities=CAPABILITIES,
            description="WhatsApp Cloud API (one phone number of a WhatsApp Business Account)",
        )
    ]


@hookimpl
def guiche_permissions() -> list[PermissionGrant]:
    return [
        PermissionGrant(
            templates.SYNC_PERMISSION,
            ("owner", "admin", "supervisor"),
            "Sync a WhatsApp Cloud channel's message templates from Meta",
        )
    ]


@hookimpl
def guiche_routes() -> list[RouteSpec]:
    return [
        RouteSpec("POST", "channels/{id}/templates/sync", routes.sync_route, name="templates_sync"),
        RouteSpec("GET", "media/{message_id}", routes.media_route, name="media"),
    ]


@hookimpl
def guiche_webhook_routes() -> list[WebhookRouteSpec]:
    return [
        WebhookRouteSpec("GET", routes.APP_PATH, routes.verify),
        WebhookRouteSpec("POST", routes.APP_PATH, routes.receive),
    ]


@hookimpl
def guiche_tasks() -> list[TaskSpec]:
    return [
        TaskSpec("sync_templates", templates.sync_all, schedule=({"cron": "23 4 * * *"},)),
        TaskSpec("download_media", media.download_media),
    ]


@hookimpl
async def guiche_on_message(ctx: PluginContext, message: StoredMessage) -> None:
    await media.on_message(ctx, message)


__all__ = [
    "AppWebhookSettings",
    "MetaCloudAdapter",
    "MetaCloudConfig",
    "guiche_channel_types",
    "guiche_on_message",
    "guiche_permissions",
    "guiche_plugin_info",
    "guiche_routes",
    "guiche_tasks",
    "guiche_webhook_routes",
]
