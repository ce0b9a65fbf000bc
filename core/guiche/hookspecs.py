"""The whole plugin contract on one screen.

Registration hooks are synchronous and return typed specs; core wires them once at
start-up. Event hooks are `async def`; core's runner awaits them (pluggy does not)
only for tenants that enabled the plugin, each with a timeout and its own exception
boundary. The event hooks' context type is beside them (`PluginContext`); the other
types live in `guiche.specs` and `guiche.channels`, and plugins import all of them from
`guiche.plugin`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import BaseModel

if TYPE_CHECKING:  # the types are the public ones; pluggy checks names, not annotations
    from guiche.channels import ConversationEvent, StoredMessage, StoredStatus
    from guiche.runtime.services import Services
    from guiche.specs import (
        ChannelSpec,
        CommandSpec,
        ConsolePage,
        PluginInfo,
        RouteSpec,
        RoutingDecision,
        ServiceSpec,
        TaskSpec,
        WebhookRouteSpec,
    )
    from guiche.tenancy.rbac import PermissionGrant

hookspec = pluggy.HookspecMarker("guiche")


@dataclass
class PluginContext:
    """Passed to event hooks: whose event it is, the plugin's settings for that tenant, services."""

    tenant_id: uuid.UUID
    plugin: str
    settings: BaseModel | dict[str, Any]
    services: Services
    logger: logging.Logger


# --- registration hooks (sync, return data) ---------------------------------------


@hookspec
def guiche_plugin_info() -> PluginInfo:
    """Return a `PluginInfo`: name (= entry-point name), version, settings model, requirements."""


@hookspec
def guiche_channel_types() -> list[ChannelSpec]:
    """Return a list of `ChannelSpec`: the channel types this plugin provides."""


@hookspec
def guiche_routes() -> list[RouteSpec]:
    """Return a list of `RouteSpec`, mounted under /api/v1/plugins/<name>/ and tenant-gated."""


@hookspec
def guiche_webhook_routes() -> list[WebhookRouteSpec]:
    """Return a list of `WebhookRouteSpec`, mounted under /webhooks/<name>/ (provider-facing)."""


@hookspec
def guiche_tasks() -> list[TaskSpec]:
    """Return a list of `TaskSpec`; registered on the broker as <plugin>.<name>."""


@hookspec
def guiche_permissions() -> list[PermissionGrant]:
    """Return a list of `PermissionGrant`: permissions this plugin defines and default roles."""


@hookspec
def guiche_piccolo_app() -> str | None:
    """Return the module path of this plugin's Piccolo app (tables + migrations), or None."""


# --- event hooks (async, run by core's runner for enabled tenants only) ----------------


@hookspec
async def guiche_on_message(ctx: PluginContext, message: StoredMessage) -> None:
    """Called after a message (inbound or outbound) is stored."""


@hookspec
async def guiche_on_message_status(ctx: PluginContext, update: StoredStatus) -> None:
    """Called after a message's delivery status moves forward."""


@hookspec
async def guiche_on_conversation_event(ctx: PluginContext, event: ConversationEvent) -> None:
    """Called when a conversation is opened, assigned, transferred, closed or expired."""


@hookspec
async def guiche_on_channel_state(ctx: PluginContext, channel: uuid.UUID, state: str) -> None:
    """Called when a channel connects, disconnects or turns unhealthy."""


@hookspec
async def guiche_route_inbound(
    ctx: PluginContext, message: StoredMessage | None
) -> RoutingDecision | None:
    """Decide which department or bot takes a new conversation; first non-None answer wins.
    `message` is the message that opened it (None only where core has none to show)."""


REGISTRATION_HOOKS = (
    "guiche_plugin_info",
    "guiche_channel_types",
    "guiche_routes",
    "guiche_webhook_routes",
    "guiche_tasks",
    "guiche_permissions",
    "guiche_piccolo_app",
    "guiche_services",
    "guiche_console_pages",
    "guiche_commands",
)
EVENT_HOOKS = (
    "guiche_on_message",
    "guiche_on_message_status",
    "guiche_on_conversation_event",
    "guiche_on_channel_state",
    "guiche_route_inbound",
)


# --- baileys_bridge: long-running plugin services --------------------------------------


@hookspec
def guiche_services() -> list[ServiceSpec]:
    """Return a list of `ServiceSpec`: long-running loops run as <plugin>.<name> by
    `guiche run`, `guiche worker` (those `with_worker`) or `guiche service NAME`."""


# --- console: pages a plugin adds to the web console (registration hook) -------------


@hookspec
def guiche_console_pages() -> list[ConsolePage]:
    """Return a list of `ConsolePage`: pages this plugin adds to the web console, each an
    ES module served from the plugin's package (docs/plugins.md, "Console pages")."""



# --- operator commands a plugin adds to the CLI (registration hook) -------------------


@hookspec
def guiche_commands() -> list[CommandSpec]:
    """Return a list of `CommandSpec`: operator commands run as `guiche <plugin> <name>`
    (docs/plugins.md, "CLI commands")."""
