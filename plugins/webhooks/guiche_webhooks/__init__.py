"""Outgoing webhooks: deliver each company's events to its own systems — from the event
log, in order, at least once, signed, retried, replayable. See plugins/webhooks/README.md."""

from __future__ import annotations

from typing import Any

from guiche.plugin import (
    PermissionGrant,
    PluginInfo,
    RouteSpec,
    TaskSpec,
    hookimpl,
)
from guiche_webhooks import tasks
from guiche_webhooks.config import OperatorSettings, WebhooksSettings
from guiche_webhooks.routes import MANAGE, ROUTES

NAME = "webhooks"
VERSION = "1.0.0"


@hookimpl
def guiche_plugin_info() -> PluginInfo:
    return PluginInfo(
        name=NAME,
        version=VERSION,
        description="Outgoing webhooks: the company's events POSTed, signed, to its own URLs",
        settings_model=WebhooksSettings,
        operator_settings=OperatorSettings,
    )


@hookimpl
def guiche_routes() -> list[RouteSpec]:
    return list(ROUTES)


@hookimpl
def guiche_permissions() -> list[PermissionGrant]:
    return [
        PermissionGrant(MANAGE, ("owner", "admin"), "Manage outgoing webhook subscriptions")
    ]


@hookimpl
def guiche_tasks() -> list[TaskSpec]:
    return [
        TaskSpec("deliver", tasks.deliver, schedule=({"interval": 1},)),
        TaskSpec("purge", tasks.purge, schedule=({"cron": "17 * * * *"},)),
    ]


@hookimpl
def guiche_piccolo_app() -> str:
    return "guiche_webhooks.piccolo_app"


@hookimpl
async def guiche_on_message(ctx: Any) -> None:
    await tasks.wake(ctx)


@hookimpl
async def guiche_on_message_status(ctx: Any) -> None:
    await tasks.wake(ctx)


@hookimpl
async def guiche_on_conversation_event(ctx: Any) -> None:
    await tasks.wake(ctx)


@hookimpl
async def guiche_on_channel_state(ctx: Any) -> None:
    await tasks.wake(ctx)
