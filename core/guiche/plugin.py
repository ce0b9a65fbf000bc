"""The public API for plugin authors: the hook marker and the typed specs hooks return.

A plugin imports from here (and `guiche.channels`), never from core internals.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import BaseModel

from guiche.rbac import PermissionGrant
from guiche.web.endpoint import AUTHENTICATED, PUBLIC, Endpoint, endpoint
from guiche.web.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    ValidationFailed,
)
from guiche.web.jsonio import json_response

if TYPE_CHECKING:
    from guiche.services import Services

PROJECT = "guiche"
API_VERSION = 1

hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class PluginInfo:
    """What a plugin says about itself. `name` must equal its entry-point name."""

    name: str
    version: str
    description: str = ""
    api_version: int = API_VERSION
    settings_model: type[BaseModel] | None = None
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteSpec:
    """A plugin route, mounted under `/api/v1/plugins/<plugin>/<path>` and tenant-gated.

    Decorate `handler` with `guiche.plugin.endpoint(...)` to declare its permission.
    """

    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    name: str | None = None


@dataclass(frozen=True)
class WebhookRouteSpec:
    """A provider-facing route under `/webhooks/<plugin>/<path>`: no user auth, no gating."""

    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class TaskSpec:
    """A background task registered on the broker as `<plugin>.<name>`."""

    name: str
    func: Callable[..., Awaitable[Any]]
    schedule: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ChannelSpec:
    """A channel type a plugin provides (the adapter contract arrives with `guiche.channels`)."""

    type: str
    adapter: type
    credentials_model: type[BaseModel]
    capabilities: frozenset[str] = field(default_factory=frozenset)
    description: str = ""


@dataclass
class PluginContext:
    """Passed to event hooks: whose event it is, the plugin's settings for that tenant, services."""

    tenant_id: uuid.UUID
    plugin: str
    settings: BaseModel | dict[str, Any]
    services: Services
    logger: logging.Logger


def plugin_name_of(request: Any) -> str | None:
    """The plugin that owns the route serving this request (set by core's router)."""
    return request.get("guiche.plugin")


__all__ = [
    "API_VERSION",
    "AUTHENTICATED",
    "PUBLIC",
    "ApiError",
    "BadRequest",
    "ChannelSpec",
    "Conflict",
    "Endpoint",
    "Forbidden",
    "NotFound",
    "PermissionGrant",
    "PluginContext",
    "PluginInfo",
    "RouteSpec",
    "TaskSpec",
    "TooManyRequests",
    "ValidationFailed",
    "WebhookRouteSpec",
    "endpoint",
    "hookimpl",
    "json_response",
    "plugin_name_of",
]
