"""guiche-hello: an example third-party plugin, using only Guichê's public plugin API."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from guiche.plugin import (
    ROLES,
    PermissionGrant,
    PluginContext,
    PluginInfo,
    RouteSpec,
    endpoint,
    hookimpl,
    plugin_context,
)

__version__ = "0.1.0"

#: Messages this plugin was shown, as (tenant id, message). A toy's memory: a real plugin
#: would enqueue a task or write to its own table.
RECEIVED: list[tuple[Any, Any]] = []


class HelloSettings(BaseModel):
    """What each company can configure: the greeting its callers get."""

    greeting: str = Field("Olá", min_length=1, max_length=80)


@endpoint("hello.read", summary="Greet the caller's company", tags=("hello",))
async def hello(request: web.Request) -> dict[str, str]:
    ctx = await plugin_context(request)
    assert isinstance(ctx.settings, HelloSettings)
    return {"greeting": ctx.settings.greeting, "tenant": str(ctx.tenant_id)}


@hookimpl
def guiche_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="hello",
        version=__version__,
        description="Says hello in each company's own words",
        settings_model=HelloSettings,
    )


@hookimpl
def guiche_routes() -> list[RouteSpec]:
    return [RouteSpec("GET", "hello", hello, name="hello")]


@hookimpl
def guiche_permissions() -> list[PermissionGrant]:
    return [PermissionGrant("hello.read", ROLES, "Read the company's greeting")]


@hookimpl
async def guiche_on_message(ctx: PluginContext, message: Any) -> None:
    RECEIVED.append((ctx.tenant_id, message))
    ctx.logger.debug("saw a message for tenant %s", ctx.tenant_id)
