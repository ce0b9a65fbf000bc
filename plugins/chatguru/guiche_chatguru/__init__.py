"""Guichê plugin `chatguru`: a company's whole ChatGuru history in its own database,
kept current by polling, in the same contact timeline as its live channels.

Registered from the entry point `chatguru = "guiche_chatguru"`; built only on Guichê's
public plugin API (`guiche.plugin`, `guiche.channels`).
"""

from __future__ import annotations

from guiche.plugin import (
    ChannelSpec,
    CommandSpec,
    PermissionGrant,
    PluginInfo,
    RouteSpec,
    TaskSpec,
    hookimpl,
)
from guiche_chatguru import catalog, command, poller, routes
from guiche_chatguru.adapter import CHANNEL_TYPE, ChatGuruAdapter
from guiche_chatguru.config import ChatGuruCredentials, ChatGuruSettings, OperatorSettings

NAME = "chatguru"
VERSION = "1.0.0"
#: The poller's tick: each account is polled when its own interval (≥ 2 s) has passed.
POLL_TICK_SECONDS = 1


@hookimpl
def guiche_plugin_info() -> PluginInfo:
    return PluginInfo(
        name=NAME,
        version=VERSION,
        description="ChatGuru history cataloger: whole history plus live polling",
        settings_model=ChatGuruSettings,
        operator_settings=OperatorSettings,
    )


@hookimpl
def guiche_channel_types() -> list[ChannelSpec]:
    return [
        ChannelSpec(
            type=CHANNEL_TYPE,
            adapter=ChatGuruAdapter,
            credentials_model=ChatGuruCredentials,
            capabilities=ChatGuruAdapter.capabilities,
            description="A ChatGuru account (history catalog and live polling)",
        )
    ]


@hookimpl
def guiche_permissions() -> list[PermissionGrant]:
    return [
        PermissionGrant(
            routes.PERMISSION_READ,
            ("owner", "admin", "supervisor"),
            "Read ChatGuru accounts, catalog progress, chats and messages by phone",
        ),
        PermissionGrant(
            routes.PERMISSION_MANAGE,
            ("owner", "admin"),
            "Test ChatGuru credentials, run the catalog, turn polling on and off",
        ),
    ]


@hookimpl
def guiche_routes() -> list[RouteSpec]:
    account = "accounts/{id}"
    return [
        RouteSpec("POST", "test-connection", routes.test_credentials, name="test_connection"),
        RouteSpec("GET", "accounts", routes.list_accounts, name="accounts"),
        RouteSpec("POST", f"{account}/test-connection", routes.test_account, name="test_account"),
        RouteSpec("GET", f"{account}/phones", routes.phones, name="phones"),
        RouteSpec("GET", f"{account}/agents", routes.agents, name="agents"),
        RouteSpec("GET", f"{account}/polling", routes.polling_status, name="polling"),
        RouteSpec("POST", f"{account}/polling/enable", routes.enable_polling, name="enable"),
        RouteSpec("POST", f"{account}/polling/disable", routes.disable_polling, name="disable"),
        RouteSpec("POST", f"{account}/catalog", routes.start_catalog, name="catalog_start"),
        RouteSpec("GET", f"{account}/catalog", routes.latest_catalog, name="catalog_latest"),
        RouteSpec("GET", "catalog/{job_id}", routes.get_job, name="catalog_job"),
        RouteSpec("POST", "catalog/{job_id}/cancel", routes.cancel_job, name="catalog_cancel"),
        RouteSpec("GET", "messages", routes.messages, name="messages"),
        RouteSpec("GET", "chats", routes.chats, name="chats"),
    ]


@hookimpl
def guiche_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(catalog.TASK, catalog.run_catalog),
        TaskSpec(poller.TASK, poller.poll_due, schedule=({"interval": POLL_TICK_SECONDS},)),
    ]


@hookimpl
def guiche_piccolo_app() -> str:
    return "guiche_chatguru.piccolo_app"


__all__ = ["CHANNEL_TYPE", "ChatGuruAdapter", "ChatGuruCredentials", "ChatGuruSettings"]


@hookimpl
def guiche_commands() -> list[CommandSpec]:
    return command.COMMANDS
