"""An in-process plugin implementing every hook proves core consumes each one."""

from __future__ import annotations

import sys
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from piccolo.columns import Varchar
from piccolo.conf.apps import AppConfig
from piccolo.table import Table
from pydantic import BaseModel

from guiche.channels import (
    ChannelAdapter,
    OutboundMessage,
    PermanentSendError,
    SendResult,
    WebhookBatch,
    WebhookRequest,
)
from guiche.companies.enablement import plugins_changed
from guiche.hookspecs import EVENT_HOOKS, REGISTRATION_HOOKS
from guiche.http.endpoint import endpoint_of
from guiche.plugin import (
    ChannelSpec,
    CommandSpec,
    ConsolePage,
    PermissionGrant,
    PluginContext,
    PluginInfo,
    RouteSpec,
    ServiceSpec,
    TaskSpec,
    WebhookRouteSpec,
    caller_of,
    endpoint,
    hookimpl,
    plugin_context,
    plugin_name_of,
)
from guiche.runtime.services import SERVICES, Services

PICCOLO_APP = "guiche_test_full_plugin.piccolo_app"


class FullSettings(BaseModel):
    label: str = "default label"


class FullCredentials(BaseModel):
    token: str


class FullAdapter(ChannelAdapter):
    """A minimal adapter: the registry only records the class."""

    config_model = FullCredentials

    async def send(self, message: OutboundMessage) -> SendResult:
        raise PermanentSendError("not used in these tests")

    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        return WebhookBatch()


class FullNote(Table, tablename="full_notes"):
    body = Varchar(length=200)


async def tick() -> None:
    return None


async def full_service(services: Services, stop: Any) -> None:
    await stop.wait()


async def full_command(services: Any, args: Any) -> int:
    return 0


class FullPlugin:
    """Implements every hookspec and records what core asked of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, uuid.UUID, tuple[Any, ...]]] = []
        self.webhooks: list[Any] = []

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="full", version="2.0", settings_model=FullSettings)

    @hookimpl
    def guiche_channel_types(self) -> list[ChannelSpec]:
        return [
            ChannelSpec(
                type="full_chat",
                adapter=FullAdapter,
                credentials_model=FullCredentials,
                capabilities=frozenset({"media"}),
            )
        ]

    @hookimpl
    def guiche_routes(self) -> list[RouteSpec]:
        @endpoint("full.read")
        async def get_item(request: web.Request) -> dict[str, Any]:
            ctx = await plugin_context(request)
            assert isinstance(ctx.settings, FullSettings)
            caller = caller_of(request)
            return {
                "caller": [str(caller.user_id), caller.role, caller.can("full.read")],
                "item": request.match_info["item_id"],
                "plugin": plugin_name_of(request),
                "label": ctx.settings.label,
                "tenant": str(ctx.tenant_id),
            }

        return [RouteSpec("GET", "items/{item_id}", get_item, name="item")]

    @hookimpl
    def guiche_webhook_routes(self) -> list[WebhookRouteSpec]:
        async def inbound(request: web.Request) -> web.Response:
            self.webhooks.append(await request.json())
            return web.json_response({"ok": True, "plugin": plugin_name_of(request)})

        return [WebhookRouteSpec("POST", "inbound", inbound)]

    @hookimpl
    def guiche_tasks(self) -> list[TaskSpec]:
        return [TaskSpec("tick", tick, schedule=({"interval": 5},))]

    @hookimpl
    def guiche_permissions(self) -> list[PermissionGrant]:
        return [PermissionGrant("full.read", ("owner", "admin"), "Read full's items")]

    @hookimpl
    def guiche_piccolo_app(self) -> str:
        return PICCOLO_APP

    @hookimpl
    def guiche_services(self) -> list[ServiceSpec]:
        return [ServiceSpec("loop", full_service, with_worker=False)]

    @hookimpl
    def guiche_console_pages(self) -> list[ConsolePage]:
        folder = Path(__file__).parent / "full_console"
        return [ConsolePage("board", "Board", folder, titles={"pt-BR": "Quadro"})]

    @hookimpl
    def guiche_commands(self) -> list[CommandSpec]:
        return [CommandSpec("sync", "sync the board", full_command)]

    @hookimpl
    async def guiche_on_message(self, ctx: PluginContext, message: Any) -> None:
        self.calls.append(("guiche_on_message", ctx.tenant_id, (message,)))

    @hookimpl
    async def guiche_on_message_status(self, ctx: PluginContext, update: Any) -> None:
        self.calls.append(("guiche_on_message_status", ctx.tenant_id, (update,)))

    @hookimpl
    async def guiche_on_conversation_event(self, ctx: PluginContext, event: Any) -> None:
        self.calls.append(("guiche_on_conversation_event", ctx.tenant_id, (event,)))

    @hookimpl
    async def guiche_on_channel_state(self, ctx: PluginContext, channel: Any, state: Any) -> None:
        self.calls.append(("guiche_on_channel_state", ctx.tenant_id, (channel, state)))

    @hookimpl
    async def guiche_route_inbound(self, ctx: PluginContext, message: Any) -> str | None:
        assert isinstance(ctx.settings, FullSettings)
        return f"sales:{ctx.settings.label}" if message == "buy" else None


class Abstain:
    """Registered before `full`: answers None, so the decision passes on."""

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="abstain", version="1")

    @hookimpl
    async def guiche_route_inbound(self, ctx: PluginContext, message: Any) -> None:
        return None


class Fallback:
    """Registered after `full`: always has an answer (pluggy's LIFO order would pick it)."""

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="fallback", version="1")

    @hookimpl
    async def guiche_route_inbound(self, message: Any) -> str:  # a subset of the arguments
        return "support"


@pytest.fixture
def full(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> FullPlugin:
    module = types.ModuleType(PICCOLO_APP)
    module.APP_CONFIG = AppConfig(  # type: ignore[attr-defined]
        app_name="full", migrations_folder_path=str(tmp_path), table_classes=[FullNote]
    )
    monkeypatch.setitem(sys.modules, PICCOLO_APP, module)
    return FullPlugin()


@pytest.fixture
async def full_client(make_client: Any, full: FullPlugin) -> Any:
    extras = (("abstain", Abstain()), ("full", full), ("fallback", Fallback()))
    return await make_client(extra_plugins=extras)


def services(client: Any) -> Services:
    return client.app[SERVICES]


def test_every_hookspec_is_implemented_by_the_full_plugin() -> None:
    implemented = {name for name in dir(FullPlugin) if name.startswith("guiche_")}
    assert implemented == set(REGISTRATION_HOOKS) | set(EVENT_HOOKS)


async def test_registration_hooks_are_consumed(full_client: Any) -> None:
    registry = services(full_client).plugins
    assert registry.infos["full"].version == "2.0"
    assert registry.settings_model("full") is FullSettings
    plugin, spec = registry.channel_type("full_chat") or ("", None)
    assert plugin == "full" and spec is not None and spec.adapter is FullAdapter
    assert registry.tasks["full.tick"].schedule == ({"interval": 5},)
    assert registry.services["full.loop"].with_worker is False
    assert FullNote in registry.tables()
    assert services(full_client).permissions.roles_for("full.read") == {"owner", "admin"}
    assert registry.hook_names("full") == [*REGISTRATION_HOOKS, *EVENT_HOOKS]
    from guiche.console.pages import PAGES_KEY

    assert [page.slug for page in full_client.app[PAGES_KEY]["full"]] == ["board"]
    from guiche.plugin_host.commands import collect_commands

    assert list(collect_commands(registry)["full"]) == ["sync"]


async def test_mounted_plugin_routes_keep_their_endpoint_declaration(full_client: Any) -> None:
    mounted = {
        route.resource.canonical: route
        for route in full_client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(("/api/v1/plugins/", "/webhooks/full/"))
    }
    assert "/api/v1/plugins/full/items/{item_id}" in mounted
    assert "/webhooks/full/inbound" in mounted
    for route in mounted.values():
        assert endpoint_of(route.handler) is not None, route.resource.canonical
    assert full_client.app.router["plugin.full.item"].url_for(item_id="7").path == (
        "/api/v1/plugins/full/items/7"
    )


async def test_plugin_route_is_gated_and_sees_its_settings(
    full_client: Any, make_company: Any, enable_plugin: Any, auth_headers: Any
) -> None:
    company = await make_company()
    headers = await auth_headers(company.owner)
    path = "/api/v1/plugins/full/items/42"
    resp = await full_client.get(path, headers=headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "plugin_not_enabled"

    await enable_plugin(company.tenant_id, "full", {"label": "Loja"})
    await plugins_changed(services(full_client), company.tenant_id)  # behind the API's back
    resp = await full_client.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {
        "caller": [str(company.owner.user_id), "owner", True],
        "item": "42",
        "plugin": "full",
        "label": "Loja",
        "tenant": str(company.tenant_id),
    }


async def test_plugin_permission_applies_to_its_route(
    full_client: Any, make_company: Any, enable_plugin: Any, auth_headers: Any
) -> None:
    company = await make_company()
    await enable_plugin(company.tenant_id, "full")
    agent = await company.add("agent")
    resp = await full_client.get("/api/v1/plugins/full/items/1", headers=await auth_headers(agent))
    assert resp.status == 403
    assert (await resp.json())["error"]["details"]["permission"] == "full.read"


async def test_unauthenticated_plugin_route_is_401(full_client: Any) -> None:
    resp = await full_client.get("/api/v1/plugins/full/items/1")
    assert resp.status == 401


async def test_webhook_route_is_reachable_without_auth(full_client: Any, full: FullPlugin) -> None:
    resp = await full_client.post("/webhooks/full/inbound", json={"entry": [1]})
    assert resp.status == 200
    assert await resp.json() == {"ok": True, "plugin": "full"}
    assert full.webhooks == [{"entry": [1]}]


async def test_on_hooks_run_for_enabled_tenant(
    full_client: Any, full: FullPlugin, make_company: Any, enable_plugin: Any
) -> None:
    company = await make_company()
    await enable_plugin(company.tenant_id, "full")
    events = services(full_client).events
    tenant = company.tenant_id
    await events.emit(tenant, "guiche_on_message", message="m1")
    await events.emit(tenant, "guiche_on_message_status", update="delivered")
    await events.emit(tenant, "guiche_on_conversation_event", event="opened")
    await events.emit(tenant, "guiche_on_channel_state", channel="c1", state="connected")
    assert full.calls == [
        ("guiche_on_message", tenant, ("m1",)),
        ("guiche_on_message_status", tenant, ("delivered",)),
        ("guiche_on_conversation_event", tenant, ("opened",)),
        ("guiche_on_channel_state", tenant, ("c1", "connected")),
    ]


async def test_route_inbound_first_non_none_in_registration_order(
    full_client: Any, make_company: Any, enable_plugin: Any
) -> None:
    company = await make_company()
    for name in ("abstain", "full", "fallback"):
        await enable_plugin(company.tenant_id, name, {"label": "vip"} if name == "full" else {})
    events = services(full_client).events
    tenant = company.tenant_id
    assert await events.first_result(tenant, "guiche_route_inbound", message="buy") == "sales:vip"
    assert await events.first_result(tenant, "guiche_route_inbound", message="hi") == "support"

    await enable_plugin(company.tenant_id, "full", enabled=False)
    await plugins_changed(services(full_client), tenant)  # written behind the API's back
    assert await events.first_result(tenant, "guiche_route_inbound", message="buy") == "support"


async def test_route_inbound_is_none_when_no_enabled_plugin_answers(
    full_client: Any, make_company: Any, enable_plugin: Any
) -> None:
    company = await make_company()
    await enable_plugin(company.tenant_id, "abstain")
    events = services(full_client).events
    assert await events.first_result(company.tenant_id, "guiche_route_inbound", message="x") is None


async def test_runner_rejects_wrong_arguments(full_client: Any) -> None:
    events = services(full_client).events
    with pytest.raises(TypeError, match="guiche_on_message takes \\['message'\\]"):
        await events.emit(uuid.uuid4(), "guiche_on_message", msg="typo")
    with pytest.raises(ValueError, match="not an event hook"):
        await events.emit(uuid.uuid4(), "guiche_routes")
