"""Start-up validation: every malformed plugin fails loudly, naming itself."""

from __future__ import annotations

import itertools
from importlib.metadata import EntryPoint
from typing import Any

import pytest
from pydantic import BaseModel

from guiche.channels import (
    ChannelAdapter,
    OutboundMessage,
    PermanentSendError,
    SendResult,
    WebhookBatch,
    WebhookRequest,
)
from guiche.plugin import (
    PUBLIC,
    ChannelSpec,
    PermissionGrant,
    PluginInfo,
    RouteSpec,
    TaskSpec,
    WebhookRouteSpec,
    endpoint,
    hookimpl,
)
from guiche.plugin_host import manager
from guiche.plugin_host.manager import PluginError, build_plugin_manager
from guiche.plugin_host.registry import PluginRegistry


class Creds(BaseModel):
    token: str


class SmsAdapter(ChannelAdapter):
    """A minimal adapter for registry tests."""

    config_model = Creds

    async def send(self, message: OutboundMessage) -> SendResult:
        raise PermanentSendError("not used in these tests")

    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        return WebhookBatch()


@endpoint("contacts.read")
async def _handler(request: Any) -> dict[str, str]:
    return {}


async def _task() -> None:
    return None


def plugin(name: str, **hooks: Any) -> tuple[str, Any]:
    """An in-process plugin `name` with a PluginInfo and the given registration results."""

    class Plugin:
        @hookimpl
        def guiche_plugin_info(self) -> PluginInfo:
            return hooks.get("info") or PluginInfo(name=name, version="1.0")

    for hook_name, value in hooks.items():
        if hook_name == "info":
            continue

        def impl(self: Any, _value: Any = value) -> Any:
            return _value

        impl.__name__ = f"guiche_{hook_name}"
        setattr(Plugin, impl.__name__, hookimpl(impl))
    return name, Plugin()


def registry_of(*extra: tuple[str, Any], blocked: tuple[str, ...] = ()) -> PluginRegistry:
    return PluginRegistry.from_manager(build_plugin_manager(blocked=blocked, extra=extra))


def test_example_plugin_is_discovered_through_its_entry_point() -> None:
    pm = build_plugin_manager()
    assert pm.has_plugin("hello")
    registry = PluginRegistry.from_manager(pm)
    assert registry.infos["hello"].version
    assert registry.hook_names("hello") == [
        "guiche_plugin_info",
        "guiche_routes",
        "guiche_permissions",
        "guiche_on_message",
    ]
    hello_grants = [g.name for g in registry.permission_grants() if g.name.startswith("hello.")]
    assert hello_grants == ["hello.read"]


def test_blocked_plugin_is_not_loaded() -> None:
    registry = registry_of(blocked=("hello",))
    assert "hello" not in registry.infos
    assert "hello" not in registry.routes
    assert not [g for g in registry.permission_grants() if g.name.startswith("hello.")]


def test_unknown_hook_name_names_the_plugin() -> None:
    class Typo:
        @hookimpl
        def guiche_plugin_info(self) -> PluginInfo:
            return PluginInfo(name="typo", version="1")

        @hookimpl
        async def guiche_on_mesage(self, ctx: Any, message: Any) -> None:
            return None

    with pytest.raises(PluginError, match=r"'typo'.*guiche_on_mesage"):
        build_plugin_manager(extra=[("typo", Typo())])


def test_duplicate_plugin_name() -> None:
    with pytest.raises(PluginError, match=r"Duplicate plugin name 'hello'"):
        build_plugin_manager(extra=[plugin("hello")])


def test_wrong_hook_signature_names_the_plugin() -> None:
    class Broken:
        @hookimpl
        async def guiche_on_message(self, ctx: Any, message: Any, surprise: Any) -> None:
            return None

    with pytest.raises(PluginError, match=r"'broken'"):
        build_plugin_manager(extra=[("broken", Broken())])


def test_plugin_failing_on_import_names_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint(name="broken", value="guiche_no_such_module", group="guiche.plugins")
    monkeypatch.setattr(manager, "entry_points", lambda group: [broken])
    with pytest.raises(PluginError, match=r"'broken'.*failed to load"):
        build_plugin_manager()


def test_plugin_info_is_required() -> None:
    class Silent:
        @hookimpl
        def guiche_tasks(self) -> list[TaskSpec]:
            return []

    with pytest.raises(PluginError, match=r"'silent' does not implement guiche_plugin_info"):
        registry_of(("silent", Silent()))


def test_plugin_info_name_must_match_entry_point() -> None:
    with pytest.raises(PluginError, match=r"'alias'.*must equal the entry-point name"):
        registry_of(plugin("alias", info=PluginInfo(name="real", version="1")))


def test_plugin_info_must_be_a_plugin_info() -> None:
    with pytest.raises(PluginError, match=r"'odd'.*must return a PluginInfo"):
        registry_of(plugin("odd", info={"name": "odd"}))


def test_unsupported_api_version() -> None:
    info = PluginInfo(name="future", version="9", api_version=99)
    with pytest.raises(PluginError, match=r"'future' targets plugin API version 99"):
        registry_of(plugin("future", info=info))


def test_required_plugin_must_be_installed() -> None:
    info = PluginInfo(name="needy", version="1", requires=("missing",))
    with pytest.raises(PluginError, match=r"'needy' requires \['missing'\]"):
        registry_of(plugin("needy", info=info))


def test_requiring_a_blocked_plugin_fails() -> None:
    info = PluginInfo(name="needy", version="1", requires=("hello",))
    with pytest.raises(PluginError, match=r"'needy' requires \['hello'\]"):
        registry_of(plugin("needy", info=info), blocked=("hello",))


def test_duplicate_channel_type_across_plugins() -> None:
    spec = ChannelSpec(type="sms", adapter=SmsAdapter, credentials_model=Creds)
    with pytest.raises(PluginError, match=r"'two': duplicate channel type 'sms'.*'one'"):
        registry_of(plugin("one", channel_types=[spec]), plugin("two", channel_types=[spec]))


def test_channel_type_lookup() -> None:
    spec = ChannelSpec(type="sms", adapter=SmsAdapter, credentials_model=Creds)
    registry = registry_of(plugin("one", channel_types=[spec]))
    assert registry.channel_type("sms") == ("one", spec)
    assert registry.channel_type("fax") is None


def test_duplicate_task_name() -> None:
    tasks = [TaskSpec("tick", _task), TaskSpec("tick", _task)]
    with pytest.raises(PluginError, match=r"'ticker': duplicate task name 'tick'"):
        registry_of(plugin("ticker", tasks=tasks))


def test_tasks_are_qualified_by_plugin() -> None:
    registry = registry_of(plugin("a", tasks=[TaskSpec("tick", _task)]), plugin("b", tasks=[]))
    assert [name for name in registry.tasks if name.startswith(("a.", "b."))] == ["a.tick"]


def test_duplicate_route() -> None:
    routes = [RouteSpec("GET", "items", _handler), RouteSpec("get", "/items/", _handler)]
    with pytest.raises(PluginError, match=r"'dup': duplicate route GET items"):
        registry_of(plugin("dup", routes=routes))


def test_duplicate_webhook_route() -> None:
    hooks = [WebhookRouteSpec("POST", "in", _handler), WebhookRouteSpec("POST", "in", _handler)]
    with pytest.raises(PluginError, match=r"'dup': duplicate route POST in"):
        registry_of(plugin("dup", webhook_routes=hooks))


def test_route_must_declare_a_permission() -> None:
    async def bare(request: Any) -> dict[str, str]:
        return {}

    with pytest.raises(PluginError, match=r"'bare'.*decorated with"):
        registry_of(plugin("bare", routes=[RouteSpec("GET", "x", bare)]))


def test_plugin_api_route_cannot_be_public() -> None:
    @endpoint(PUBLIC)
    async def open_route(request: Any) -> dict[str, str]:
        return {}

    with pytest.raises(PluginError, match=r"'open'.*PUBLIC"):
        registry_of(plugin("open", routes=[RouteSpec("GET", "x", open_route)]))


def test_route_permission_must_exist() -> None:
    @endpoint("ghost.read")
    async def ghost(request: Any) -> dict[str, str]:
        return {}

    with pytest.raises(PluginError, match=r"'ghost'.*unknown permission 'ghost.read'"):
        registry_of(plugin("ghost", routes=[RouteSpec("GET", "x", ghost)]))


def test_duplicate_permission_across_plugins() -> None:
    grant = PermissionGrant("shared.read", ("owner",))
    with pytest.raises(PluginError, match=r"'two': duplicate permission 'shared.read'"):
        registry_of(plugin("one", permissions=[grant]), plugin("two", permissions=[grant]))


def test_plugin_cannot_redefine_a_core_permission() -> None:
    grant = PermissionGrant("contacts.read", ("viewer",))
    with pytest.raises(PluginError, match=r"'sneaky'.*core permission"):
        registry_of(plugin("sneaky", permissions=[grant]))


def test_permission_with_unknown_role() -> None:
    grant = PermissionGrant("x.read", ("janitor",))
    with pytest.raises(PluginError, match=r"'roles'.*unknown roles \['janitor'\]"):
        registry_of(plugin("roles", permissions=[grant]))


def test_event_hook_must_be_async() -> None:
    class Sync:
        @hookimpl
        def guiche_plugin_info(self) -> PluginInfo:
            return PluginInfo(name="sync", version="1")

        @hookimpl
        def guiche_on_message(self, ctx: Any, message: Any) -> None:
            return None

    with pytest.raises(PluginError, match=r"'sync'.*must be `async def`"):
        registry_of(("sync", Sync()))


def test_registration_hook_must_not_be_async() -> None:
    class Eager:
        @hookimpl
        async def guiche_plugin_info(self) -> PluginInfo:
            return PluginInfo(name="eager", version="1")

    with pytest.raises(PluginError, match=r"'eager'.*plain \(non-async\)"):
        registry_of(("eager", Eager()))


def test_registration_hook_raising_names_the_plugin() -> None:
    class Crashy:
        @hookimpl
        def guiche_plugin_info(self) -> PluginInfo:
            raise RuntimeError("kaput")

    with pytest.raises(PluginError, match=r"'crashy': guiche_plugin_info\(\) raised"):
        registry_of(("crashy", Crashy()))


def test_piccolo_app_that_fails_to_import_names_the_plugin() -> None:
    with pytest.raises(PluginError, match=r"'tables'.*Piccolo app 'no_such.app'"):
        registry_of(plugin("tables", piccolo_app="no_such.app"))


def test_wrong_spec_type_names_the_plugin() -> None:
    with pytest.raises(PluginError, match=r"'sloppy'.*must return TaskSpec items"):
        registry_of(plugin("sloppy", tasks=[{"name": "tick"}]))


def test_installed_plugins_keep_the_roles_nested() -> None:
    """Each role holds everything the role below it holds, with every installed plugin's
    grants: an admin may create a supervisor's API key (a key never exceeds its creator),
    an owner anything an admin can do."""
    from guiche.plugin_host.manager import build_plugin_manager
    from guiche.plugin_host.registry import PluginRegistry
    from guiche.tenancy.rbac import PermissionRegistry

    registry = PluginRegistry.from_manager(build_plugin_manager())
    permissions = PermissionRegistry(registry.permission_grants())
    ladder = ("agent", "supervisor", "admin", "owner")
    for lower, higher in itertools.pairwise(ladder):
        missing = permissions.for_role(lower) - permissions.for_role(higher)
        assert not missing, f"{higher} lacks what {lower} has: {sorted(missing)}"
    missing = permissions.for_role("viewer") - permissions.for_role("admin")
    assert not missing, f"admin lacks what viewer has: {sorted(missing)}"
