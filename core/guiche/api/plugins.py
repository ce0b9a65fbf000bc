"""Per-tenant plugin enablement: which installed plugins a company uses, and their settings.

Installed is code (entry points, minus the operator's block-list); enabled is data
(`tenant_plugins`). Settings are validated by the plugin's own pydantic model.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from guiche.auth.principal import current_principal
from guiche.companies.audit import record_audit
from guiche.companies.enablement import plugins_changed
from guiche.foundation.errors import NotFound, ValidationFailed, pydantic_details
from guiche.foundation.jsonio import validate_strict
from guiche.http.endpoint import endpoint
from guiche.models import TenantPlugin
from guiche.plugin import PluginInfo
from guiche.plugin_host.context import TenantPluginState
from guiche.plugin_host.registry import PluginRegistry
from guiche.runtime.services import services_of

routes = web.RouteTableDef()


class PluginOut(BaseModel):
    name: str
    version: str
    description: str
    requires: list[str]
    enabled: bool
    settings: dict[str, Any]
    settings_valid: bool
    settings_schema: dict[str, Any] | None


class PluginList(BaseModel):
    items: list[PluginOut]
    next_cursor: str | None = None


class PluginUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool
    settings: dict[str, Any] | None = None


@routes.get("/api/v1/plugins")
@endpoint("plugins.read", response=PluginList, summary="Installed plugins", tags=("plugins",))
async def list_plugins(request: web.Request) -> PluginList:
    principal = current_principal(request)
    registry = services_of(request).plugins
    states = await _tenant_states(principal.tenant_id)
    items = [_describe(registry, info, states.get(name)) for name, info in registry.infos.items()]
    return PluginList(items=items)


@routes.put("/api/v1/plugins/{name}")
@endpoint(
    "plugins.manage",
    body=PluginUpdate,
    response=PluginOut,
    summary="Enable, disable or configure a plugin for this company",
    tags=("plugins",),
)
async def update_plugin(request: web.Request, *, body: PluginUpdate) -> PluginOut:
    principal = current_principal(request)
    registry = services_of(request).plugins
    name = request.match_info["name"]
    info = registry.infos.get(name)
    if info is None:
        raise NotFound(f"No plugin named {name!r} is installed", code="plugin_not_found")
    async with TenantPlugin._meta.db.transaction():
        # Serialise changes per company so two requests cannot break a `requires` chain.
        await TenantPlugin.raw(
            "SELECT pg_advisory_xact_lock(hashtextextended({}, 0))",
            f"tenant_plugins:{principal.tenant_id}",
        )
        states = await _tenant_states(principal.tenant_id)
        current = states.get(name, TenantPluginState(enabled=False, settings={}))
        settings = body.settings if body.settings is not None else current.settings
        if body.settings is not None or body.enabled:
            _validate_settings(registry, name, settings)
        if body.enabled:
            _check_requirements(info, states)
        else:
            _check_dependents(registry, name, states)
        rows = await TenantPlugin.raw(
            "INSERT INTO tenant_plugins (tenant, plugin, enabled, settings, updated_at) "
            "VALUES ({}, {}, {}, {}::jsonb, now()) "
            "ON CONFLICT (tenant, plugin) DO UPDATE SET enabled = EXCLUDED.enabled, "
            "settings = EXCLUDED.settings, updated_at = now() RETURNING id",
            principal.tenant_id,
            name,
            body.enabled,
            orjson.dumps(settings).decode(),
        )
        await record_audit(
            principal,
            _audit_action(current.enabled, body.enabled),
            "plugin",
            rows[0]["id"],
            {
                "plugin": name,
                "enabled": body.enabled,
                # Field names only: settings may hold credentials.
                "settings_changed": sorted(_changed_keys(current.settings, settings)),
            },
        )
    await plugins_changed(services_of(request), principal.tenant_id)
    return _describe(registry, info, TenantPluginState(body.enabled, dict(settings)))


async def _tenant_states(tenant_id: uuid.UUID) -> dict[str, TenantPluginState]:
    rows = (
        await TenantPlugin.select(TenantPlugin.plugin, TenantPlugin.enabled, TenantPlugin.settings)
        .where(TenantPlugin.tenant == tenant_id)
        .output(load_json=True)
    )
    return {
        row["plugin"]: TenantPluginState(bool(row["enabled"]), dict(row["settings"] or {}))
        for row in rows
    }


def _describe(
    registry: PluginRegistry, info: PluginInfo, state: TenantPluginState | None
) -> PluginOut:
    """A plugin as a tenant sees it; settings shown through the model (secrets masked)."""
    state = state or TenantPluginState(enabled=False, settings={})
    model = info.settings_model
    try:
        validated = registry.validate_settings(info.name, state.settings)
        shown = validated.model_dump(mode="json") if model is not None else dict(validated)
        valid = True
    except ValidationError:
        shown, valid = dict(state.settings), False
    return PluginOut(
        name=info.name,
        version=info.version,
        description=info.description,
        requires=list(info.requires),
        enabled=state.enabled,
        settings=shown,
        settings_valid=valid,
        settings_schema=model.model_json_schema() if model is not None else None,
    )


def _validate_settings(registry: PluginRegistry, name: str, settings: dict[str, Any]) -> None:
    model = registry.settings_model(name)
    try:
        if model is not None:
            validate_strict(model, settings)  # as API input: strict, like the body itself
    except ValidationError as exc:
        details = [
            {**item, "field": f"settings.{item['field']}" if item["field"] else "settings"}
            for item in pydantic_details(exc.errors())
        ]
        raise ValidationFailed(
            f"Invalid settings for plugin {name!r}", code="invalid_plugin_settings", details=details
        ) from None


def _check_requirements(info: PluginInfo, states: dict[str, TenantPluginState]) -> None:
    missing = [req for req in info.requires if not (req in states and states[req].enabled)]
    if missing:
        raise ValidationFailed(
            f"Plugin {info.name!r} needs {missing} enabled first",
            code="plugin_requirements",
            details=[
                {"field": "enabled", "message": f"requires plugin {req!r}"} for req in missing
            ],
        )


def _check_dependents(
    registry: PluginRegistry, name: str, states: dict[str, TenantPluginState]
) -> None:
    dependents = [
        plugin
        for plugin, state in states.items()
        if state.enabled and plugin in registry.infos and name in registry.infos[plugin].requires
    ]
    if dependents:
        raise ValidationFailed(
            f"Plugin {name!r} is required by {dependents}; disable those first",
            code="plugin_required",
            details=[
                {"field": "enabled", "message": f"required by plugin {plugin!r}"}
                for plugin in dependents
            ],
        )


def _audit_action(was_enabled: bool, enabled: bool) -> str:
    if enabled and not was_enabled:
        return "plugin.enabled"
    if was_enabled and not enabled:
        return "plugin.disabled"
    return "plugin.settings_updated"


def _changed_keys(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
