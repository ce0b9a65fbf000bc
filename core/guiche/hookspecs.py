"""The whole plugin contract on one screen.

Registration hooks are synchronous and return typed specs; core wires them once at
start-up. Event hooks are `async def`; core's runner awaits them (pluggy does not)
only for tenants that enabled the plugin, each with a timeout and its own exception
boundary. Types live in `guiche.plugin`.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("guiche")

# --- registration hooks (sync, return data) ---------------------------------------


@hookspec
def guiche_plugin_info() -> Any:
    """Return a `PluginInfo`: name (= entry-point name), version, settings model, requirements."""


@hookspec
def guiche_channel_types() -> Any:
    """Return a list of `ChannelSpec`: the channel types this plugin provides."""


@hookspec
def guiche_routes() -> Any:
    """Return a list of `RouteSpec`, mounted under /api/v1/plugins/<name>/ and tenant-gated."""


@hookspec
def guiche_webhook_routes() -> Any:
    """Return a list of `WebhookRouteSpec`, mounted under /webhooks/<name>/ (provider-facing)."""


@hookspec
def guiche_tasks() -> Any:
    """Return a list of `TaskSpec`; registered on the broker as <plugin>.<name>."""


@hookspec
def guiche_permissions() -> Any:
    """Return a list of `PermissionGrant`: permissions this plugin defines and default roles."""


@hookspec
def guiche_piccolo_app() -> Any:
    """Return the module path of this plugin's Piccolo app (tables + migrations), or None."""


# --- event hooks (async, run by core's runner for enabled tenants only) ----------------


@hookspec
async def guiche_on_message(ctx: Any, message: Any) -> None:
    """Called after a message (inbound or outbound) is stored."""


@hookspec
async def guiche_on_message_status(ctx: Any, update: Any) -> None:
    """Called after a message's delivery status moves forward."""


@hookspec
async def guiche_on_conversation_event(ctx: Any, event: Any) -> None:
    """Called when a conversation is opened, assigned, transferred, closed or expired."""


@hookspec
async def guiche_on_channel_state(ctx: Any, channel: Any, state: Any) -> None:
    """Called when a channel connects, disconnects or turns unhealthy."""


@hookspec
async def guiche_route_inbound(ctx: Any, message: Any) -> Any:
    """Decide which department or bot takes a new conversation; first non-None answer wins."""


REGISTRATION_HOOKS = (
    "guiche_plugin_info",
    "guiche_channel_types",
    "guiche_routes",
    "guiche_webhook_routes",
    "guiche_tasks",
    "guiche_permissions",
    "guiche_piccolo_app",
)
EVENT_HOOKS = (
    "guiche_on_message",
    "guiche_on_message_status",
    "guiche_on_conversation_event",
    "guiche_on_channel_state",
    "guiche_route_inbound",
)
