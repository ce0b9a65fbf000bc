"""Campaigns: bulk sends that pace themselves, never send twice and survive crashes.

Routes under `/api/v1/plugins/campaigns/`, the `campaigns.drive` / `campaigns.tick`
tasks, the ledger fed by core's status and inbound hooks. See README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guiche.plugin import (
    ConsolePage,
    PermissionGrant,
    PluginInfo,
    RouteSpec,
    TaskSpec,
    hookimpl,
)

from . import engine, store
from .optout import on_inbound
from .routes import MANAGE, READ, routes
from .settings import CampaignSettings

__version__ = "0.1.0"

#: Core delivery statuses → ledger states, and the states each may replace.
STATUS_MOVES = {
    "sent": ("sent", ("queued",)),
    "delivered": ("delivered", ("queued", "sent")),
    "read": ("read", ("queued", "sent", "delivered")),
    "failed": ("failed", ("queued", "sent")),
    "unknown": ("failed", ("queued",)),
}


@hookimpl
def guiche_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="campaigns",
        version=__version__,
        description="Bulk campaigns: paced, exactly once per recipient, crash-safe",
        settings_model=CampaignSettings,
    )


@hookimpl
def guiche_routes() -> list[RouteSpec]:
    return routes()


@hookimpl
def guiche_permissions() -> list[PermissionGrant]:
    return [
        PermissionGrant(READ, ("owner", "admin", "supervisor"), "See campaigns and reports"),
        PermissionGrant(MANAGE, ("owner", "admin"), "Create, run and stop campaigns"),
    ]


@hookimpl
def guiche_tasks() -> list[TaskSpec]:
    return [
        TaskSpec("drive", engine.drive),
        TaskSpec("tick", engine.tick, schedule=({"interval": 5},)),
    ]


@hookimpl
def guiche_piccolo_app() -> str:
    return "guiche_campaigns.piccolo_app"


@hookimpl
async def guiche_on_message_status(ctx: Any, update: Any) -> None:
    """Core's statuses move the ledger forward (never back)."""
    move = STATUS_MOVES.get(str(getattr(update.status, "value", update.status)))
    if move is None:
        return
    state, replaces = move
    reason = None
    if state == "failed":
        error = update.error.model_dump(mode="json") if update.error is not None else None
        reason = error or {"code": str(update.status)}
    await ctx.services.db.pool.execute(
        store.STATUS_UPDATE, ctx.tenant_id, update.message_id, state, store.jsonb(reason),
        list(replaces),
    )  # fmt: skip


@hookimpl
async def guiche_on_message(ctx: Any, message: Any) -> None:
    """Replies and opt-out keywords from customers."""
    if message.direction != "in":
        return
    await on_inbound(ctx, message, ctx.settings or CampaignSettings())


@hookimpl
def guiche_console_pages() -> list[ConsolePage]:
    """A console page (ES module in `console/`) for people holding READ."""
    return [
        ConsolePage(
            "campaigns",
            "Campaigns",
            Path(__file__).parent / "console",
            titles={"pt-BR": "Campanhas"},
            permission=READ,
        )
    ]
