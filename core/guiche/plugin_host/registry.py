"""What the installed plugins contribute, collected and validated once at start-up.

Registration hooks are called per plugin (not through `pm.hook`), so every spec is
known to come from a named plugin and every problem — a missing `PluginInfo`, a
duplicate channel type, a route without a permission — fails start-up with a
`PluginError` that says which plugin to fix.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from typing import Any, TypeVar

import pluggy
from piccolo.table import Table
from pydantic import BaseModel

from guiche.channels import ChannelAdapter
from guiche.hookspecs import EVENT_HOOKS, REGISTRATION_HOOKS
from guiche.http.endpoint import AUTHENTICATED, PUBLIC, endpoint, endpoint_of
from guiche.plugin_host.manager import PluginError
from guiche.specs import (
    API_VERSION,
    ChannelSpec,
    PluginInfo,
    RouteSpec,
    ServiceSpec,
    TaskSpec,
    WebhookRouteSpec,
)
from guiche.tenancy.rbac import CORE_PERMISSIONS, PLATFORM_PERMISSIONS, ROLES, PermissionGrant

SUPPORTED_API_VERSIONS = frozenset({API_VERSION})
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

T = TypeVar("T")


class PluginRegistry:
    """The validated contributions of every loaded plugin; owns the pluggy manager."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.infos: dict[str, PluginInfo] = {}
        self.routes: dict[str, list[RouteSpec]] = {}
        self.webhook_routes: dict[str, list[WebhookRouteSpec]] = {}
        self.tasks: dict[str, TaskSpec] = {}
        self.channel_types: dict[str, tuple[str, ChannelSpec]] = {}
        self.piccolo_apps: dict[str, str] = {}
        self.services: dict[str, ServiceSpec] = {}  # "<plugin>.<name>" -> spec
        self._grants: dict[str, tuple[str, PermissionGrant]] = {}
        self._tables: list[type[Table]] = []

    @classmethod
    def from_manager(cls, pm: pluggy.PluginManager) -> PluginRegistry:
        """Call every registration hook per plugin and validate the result."""
        registry = cls(pm)
        registry._check_impls()
        registry._collect_infos()
        registry._collect_channel_types()
        registry._collect_permissions()
        registry._collect_routes()
        registry._collect_webhook_routes()
        registry._collect_tasks()
        registry._collect_piccolo_apps()
        registry._collect_services()
        return registry

    # --- queries ----------------------------------------------------------------------

    def channel_type(self, name: str) -> tuple[str, ChannelSpec] | None:
        """The (plugin, spec) providing channel type `name`, if an installed plugin does."""
        return self.channel_types.get(name)

    def permission_grants(self) -> list[PermissionGrant]:
        return [grant for _, grant in self._grants.values()]

    def tables(self) -> list[type[Table]]:
        return list(self._tables)

    def settings_model(self, plugin: str) -> type[BaseModel] | None:
        return self.infos[plugin].settings_model

    def validate_settings(self, plugin: str, data: dict[str, Any]) -> BaseModel | dict[str, Any]:
        """The tenant's settings as the plugin's model (raises pydantic's ValidationError)."""
        model = self.settings_model(plugin)
        return model.model_validate(data) if model is not None else dict(data)

    def hook_names(self, plugin: str) -> list[str]:
        """Names of the hooks `plugin` implements, in contract order."""
        implemented = {
            caller.name for caller in self.pm.get_hookcallers(self.pm.get_plugin(plugin)) or ()
        }
        return [name for name in (*REGISTRATION_HOOKS, *EVENT_HOOKS) if name in implemented]

    def event_impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        """Implementations of an event hook in call order: tryfirst, normal, trylast;
        registration order within each group (pluggy itself calls newest first)."""
        impls = self._impls(hook_name)
        first = [impl for impl in impls if impl.tryfirst]
        last = [impl for impl in impls if impl.trylast]
        middle = [impl for impl in impls if not impl.tryfirst and not impl.trylast]
        # pluggy inserts each trylast impl at the front, so that group is newest first.
        return [*first, *middle, *reversed(last)]

    # --- collection -------------------------------------------------------------------

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        return list(getattr(self.pm.hook, hook_name).get_hookimpls())

    def _loaded(self) -> list[str]:
        return [name for name, plugin in self.pm.list_name_plugin() if plugin is not None]

    def _call_each(self, hook_name: str) -> list[tuple[str, Any]]:
        """(plugin, result) for each plugin implementing a registration hook."""
        results: list[tuple[str, Any]] = []
        for impl in self._impls(hook_name):
            try:
                result = impl.function()
            except Exception as exc:
                raise PluginError(
                    f"Plugin {impl.plugin_name!r}: {hook_name}() raised {exc!r}"
                ) from exc
            results.append((impl.plugin_name, result))
        return results

    def _check_impls(self) -> None:
        for hook_name in REGISTRATION_HOOKS:
            for impl in self._impls(hook_name):
                if inspect.iscoroutinefunction(impl.function):
                    raise PluginError(
                        f"Plugin {impl.plugin_name!r}: {hook_name} is a registration hook "
                        "and must be a plain (non-async) function"
                    )
                if impl.wrapper or impl.hookwrapper:
                    raise PluginError(f"Plugin {impl.plugin_name!r}: {hook_name} cannot wrap")
        for hook_name in EVENT_HOOKS:
            for impl in self._impls(hook_name):
                if not inspect.iscoroutinefunction(impl.function):
                    raise PluginError(
                        f"Plugin {impl.plugin_name!r}: {hook_name} is an event hook "
                        "and must be `async def`"
                    )
                if impl.wrapper or impl.hookwrapper:
                    raise PluginError(f"Plugin {impl.plugin_name!r}: {hook_name} cannot wrap")

    def _collect_infos(self) -> None:
        for plugin, info in self._call_each("guiche_plugin_info"):
            if not isinstance(info, PluginInfo):
                raise PluginError(
                    f"Plugin {plugin!r}: guiche_plugin_info() must return a PluginInfo, "
                    f"got {type(info).__name__}"
                )
            if info.name != plugin:
                raise PluginError(
                    f"Plugin {plugin!r}: PluginInfo.name is {info.name!r}; it must equal "
                    "the entry-point name"
                )
            if info.api_version not in SUPPORTED_API_VERSIONS:
                raise PluginError(
                    f"Plugin {plugin!r} targets plugin API version {info.api_version}; "
                    f"this Guichê supports {sorted(SUPPORTED_API_VERSIONS)}"
                )
            model = info.settings_model
            if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise PluginError(f"Plugin {plugin!r}: settings_model must be a pydantic model")
            self.infos[plugin] = info
        missing = [name for name in self._loaded() if name not in self.infos]
        if missing:
            raise PluginError(
                f"Plugin {missing[0]!r} does not implement guiche_plugin_info(); "
                "every plugin must describe itself"
            )
        for plugin, info in self.infos.items():
            absent = [name for name in info.requires if name not in self.infos]
            if absent:
                raise PluginError(
                    f"Plugin {plugin!r} requires {absent}, which are not installed (or blocked)"
                )

    def _collect_channel_types(self) -> None:
        for plugin, specs in self._call_each("guiche_channel_types"):
            for spec in _items(plugin, "guiche_channel_types", specs, ChannelSpec):
                if not isinstance(spec.credentials_model, type) or not issubclass(
                    spec.credentials_model, BaseModel
                ):
                    raise PluginError(
                        f"Plugin {plugin!r}: channel type {spec.type!r} credentials_model "
                        "must be a pydantic model"
                    )
                if not isinstance(spec.adapter, type) or not issubclass(
                    spec.adapter, ChannelAdapter
                ):
                    raise PluginError(
                        f"Plugin {plugin!r}: channel type {spec.type!r} adapter must subclass "
                        "guiche.channels.ChannelAdapter"
                    )
                owner = self.channel_types.get(spec.type)
                if owner is not None:
                    raise PluginError(
                        f"Plugin {plugin!r}: duplicate channel type {spec.type!r} "
                        f"(already provided by plugin {owner[0]!r})"
                    )
                self.channel_types[spec.type] = (plugin, spec)

    def _collect_routes(self) -> None:
        """Plugin API routes: each declares a known permission (collected just before)."""
        known = {*CORE_PERMISSIONS, *PLATFORM_PERMISSIONS, *self._grants, AUTHENTICATED}
        seen: set[tuple[str, str]] = set()
        for plugin, specs in self._call_each("guiche_routes"):
            routes: list[RouteSpec] = []
            for spec in _items(plugin, "guiche_routes", specs, RouteSpec):
                method, path = _check_route(plugin, spec.method, spec.path, seen)
                declared = endpoint_of(spec.handler)
                if declared is None:
                    raise PluginError(
                        f"Plugin {plugin!r}: route {method} {path} must be decorated with "
                        "guiche.plugin.endpoint(permission)"
                    )
                if declared.permission == PUBLIC:
                    raise PluginError(
                        f"Plugin {plugin!r}: route {method} {path} is PUBLIC; plugin API routes "
                        "are per tenant (use guiche_webhook_routes for provider-facing routes)"
                    )
                if declared.permission not in known:
                    raise PluginError(
                        f"Plugin {plugin!r}: route {method} {path} declares unknown permission "
                        f"{declared.permission!r} (define it in guiche_permissions)"
                    )
                routes.append(RouteSpec(method, path, spec.handler, spec.name))
            self.routes.setdefault(plugin, []).extend(routes)

    def _collect_webhook_routes(self) -> None:
        seen: set[tuple[str, str]] = set()
        for plugin, specs in self._call_each("guiche_webhook_routes"):
            routes: list[WebhookRouteSpec] = []
            for spec in _items(plugin, "guiche_webhook_routes", specs, WebhookRouteSpec):
                method, path = _check_route(plugin, spec.method, spec.path, seen)
                handler = spec.handler
                if endpoint_of(handler) is None:
                    # Provider-facing: declared PUBLIC so every mounted route states its access.
                    handler = endpoint(PUBLIC, tags=("webhooks",))(handler)
                routes.append(WebhookRouteSpec(method, path, handler))
            self.webhook_routes.setdefault(plugin, []).extend(routes)

    def _collect_tasks(self) -> None:
        for plugin, specs in self._call_each("guiche_tasks"):
            for spec in _items(plugin, "guiche_tasks", specs, TaskSpec):
                if not spec.name or "." in spec.name:
                    raise PluginError(
                        f"Plugin {plugin!r}: task name {spec.name!r} must be non-empty, no dots"
                    )
                if not inspect.iscoroutinefunction(spec.func):
                    raise PluginError(f"Plugin {plugin!r}: task {spec.name!r} must be async def")
                qualified = f"{plugin}.{spec.name}"
                if qualified in self.tasks:
                    raise PluginError(f"Plugin {plugin!r}: duplicate task name {spec.name!r}")
                self.tasks[qualified] = spec

    def _collect_permissions(self) -> None:
        for plugin, grants in self._call_each("guiche_permissions"):
            for grant in _items(plugin, "guiche_permissions", grants, PermissionGrant):
                unknown = set(grant.roles) - set(ROLES)
                if unknown:
                    raise PluginError(
                        f"Plugin {plugin!r}: permission {grant.name!r} names unknown roles "
                        f"{sorted(unknown)}"
                    )
                if grant.name in CORE_PERMISSIONS or grant.name in PLATFORM_PERMISSIONS:
                    raise PluginError(
                        f"Plugin {plugin!r}: permission {grant.name!r} is a core permission"
                    )
                owner = self._grants.get(grant.name)
                if owner is not None:
                    raise PluginError(
                        f"Plugin {plugin!r}: duplicate permission {grant.name!r} "
                        f"(already defined by plugin {owner[0]!r})"
                    )
                self._grants[grant.name] = (plugin, grant)

    def _collect_piccolo_apps(self) -> None:
        for plugin, module_path in self._call_each("guiche_piccolo_app"):
            if not module_path:
                continue
            if not isinstance(module_path, str):
                raise PluginError(
                    f"Plugin {plugin!r}: guiche_piccolo_app() must return a module path string"
                )
            try:
                module = importlib.import_module(module_path)
                tables = list(module.APP_CONFIG.table_classes)
            except Exception as exc:
                raise PluginError(
                    f"Plugin {plugin!r}: Piccolo app {module_path!r} failed to load: {exc!r}"
                ) from exc
            self.piccolo_apps[plugin] = module_path
            self._tables.extend(tables)

    def _collect_services(self) -> None:
        for plugin, specs in self._call_each("guiche_services"):
            for spec in _items(plugin, "guiche_services", specs, ServiceSpec):
                if not spec.name or "." in spec.name:
                    raise PluginError(
                        f"Plugin {plugin!r}: service name {spec.name!r} must be non-empty, no dots"
                    )
                if not inspect.iscoroutinefunction(spec.func):
                    raise PluginError(
                        f"Plugin {plugin!r}: service {spec.name!r} must be async def"
                    )
                qualified = f"{plugin}.{spec.name}"
                if qualified in self.services:
                    raise PluginError(f"Plugin {plugin!r}: duplicate service name {spec.name!r}")
                self.services[qualified] = spec


def _items(plugin: str, hook_name: str, value: Any, kind: type[T]) -> list[T]:
    """A hook's return value as a list of `kind`, or a PluginError naming the plugin."""
    if value is None:
        return []
    items = list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [value]
    for item in items:
        if not isinstance(item, kind):
            raise PluginError(
                f"Plugin {plugin!r}: {hook_name}() must return {kind.__name__} items, "
                f"got {type(item).__name__}"
            )
    return items


def _check_route(
    plugin: str, method: str, path: str, seen: set[tuple[str, str]]
) -> tuple[str, str]:
    """Normalise (method, path) and reject bad or duplicate routes for this plugin."""
    method = method.upper()
    if method not in HTTP_METHODS:
        raise PluginError(f"Plugin {plugin!r}: unsupported HTTP method {method!r}")
    path = path.strip("/")
    if not path:
        raise PluginError(f"Plugin {plugin!r}: a route path cannot be empty")
    key = (method, f"{plugin}/{path}")
    if key in seen:
        raise PluginError(f"Plugin {plugin!r}: duplicate route {method} {path}")
    seen.add(key)
    return method, path


__all__ = ["PluginError", "PluginRegistry"]
