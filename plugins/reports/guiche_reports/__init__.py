"""Guichê's reports plugin: service metrics per finished conversation, hourly rollups,
aggregates, CSV export and a live dashboard (README.md: definitions, API, settings)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from guiche.channels import ConversationEvent
from guiche.plugin import (
    ROLES,
    ConsolePage,
    PermissionGrant,
    PluginContext,
    PluginInfo,
    RouteSpec,
    TaskSpec,
    enabled_contexts,
    hookimpl,
)
from guiche_reports import dashboard, routes, store
from guiche_reports.calendar import Calendar
from guiche_reports.config import ReportsSettings
from guiche_reports.visibility import READ_ALL, READ_DEPARTMENTS

NAME = "reports"
REMEASURE = frozenset({"closed", "expired", "reopened"})


@hookimpl
def guiche_plugin_info() -> PluginInfo:
    return PluginInfo(
        name=NAME,
        version="0.1.0",
        description="Service metrics, aggregates, CSV export and a live dashboard",
        settings_model=ReportsSettings,
    )


@hookimpl
def guiche_permissions() -> list[PermissionGrant]:
    return [
        PermissionGrant(routes.READ, ROLES, "Read reports (agents: their own figures)"),
        PermissionGrant(READ_ALL, ("owner", "admin", "viewer"), "Read the whole company's reports"),
        # Held by every role above the supervisor too (they read everything anyway), so
        # an admin may create a supervisor's API key: a key never exceeds its creator.
        PermissionGrant(
            READ_DEPARTMENTS,
            ("owner", "admin", "supervisor", "viewer"),
            "Read the reports of one's departments",
        ),
        PermissionGrant(
            routes.COSTS,
            ("owner", "admin", "supervisor", "viewer"),
            "Read the company's provider cost",
        ),
        PermissionGrant(
            routes.LAYOUT, ("owner", "admin", "supervisor", "agent"), "Save one's dashboard"
        ),
        PermissionGrant(routes.MANAGE, ("owner", "admin"), "Rebuild the company's reports"),
    ]


@hookimpl
def guiche_routes() -> list[RouteSpec]:
    return [
        RouteSpec("GET", "conversations", routes.list_conversations, name="conversations"),
        RouteSpec("GET", "conversations.csv", routes.export_conversations, name="export"),
        RouteSpec("GET", "aggregates", routes.get_aggregates, name="aggregates"),
        RouteSpec("GET", "costs", routes.get_costs, name="costs"),
        RouteSpec("GET", "costs.csv", routes.export_costs, name="export_costs"),
        RouteSpec("GET", "dashboard", routes.get_dashboard, name="dashboard"),
        RouteSpec("GET", "dashboard/layout", routes.get_layout, name="layout"),
        RouteSpec("PUT", "dashboard/layout", routes.put_layout, name="save_layout"),
        RouteSpec("POST", "rebuild", routes.rebuild, name="rebuild"),
    ]


@hookimpl
def guiche_piccolo_app() -> str:
    return "guiche_reports.piccolo_app"


async def catch_up(services: Any) -> int:
    """Measure what the hooks missed (or everything, for a company that just enabled us),
    then complete the day blocks up to yesterday (`store.advance`)."""
    total = 0
    now = dt.datetime.now(dt.UTC)
    for ctx in await enabled_contexts(services, NAME):
        total += await store.catch_up(services, ctx.tenant_id, ctx.settings)
        today = Calendar.of(ctx.settings).local(now).date()
        await store.advance(services, ctx.tenant_id, today)
    return total


async def publish_dashboards(services: Any) -> int:
    contexts = await enabled_contexts(services, NAME)
    return await dashboard.publish_changed(services, [ctx.tenant_id for ctx in contexts])


@hookimpl
def guiche_tasks() -> list[TaskSpec]:
    return [
        TaskSpec("catch_up", catch_up, schedule=({"interval": 60},)),
        TaskSpec("publish_dashboards", publish_dashboards, schedule=({"interval": 5},)),
    ]


@hookimpl
async def guiche_on_conversation_event(ctx: PluginContext, event: ConversationEvent) -> None:
    """A close (or reopen) is measured at once; any move changes the dashboard."""
    if event.action in REMEASURE:
        await store.refresh(ctx.services, ctx.tenant_id, ctx.settings, [event.conversation_id])
    await dashboard.mark_changed(ctx.services, ctx.tenant_id)


@hookimpl
def guiche_console_pages() -> list[ConsolePage]:
    """A console page (ES module in `console/`) for people holding routes.READ."""
    return [
        ConsolePage(
            "reports",
            "Reports",
            Path(__file__).parent / "console",
            titles={"pt-BR": "Relatórios"},
            permission=routes.READ,
        )
    ]
