"""The shared services container handed to routes, tasks and plugin hooks.

Web and worker processes build the same container, so a task and a route see the
same database engine, Redis client, HTTP client and plugin runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from aiohttp import web
from piccolo.engine.postgres import PostgresEngine
from redis.asyncio import Redis

from guiche.config import Settings
from guiche.rbac import PermissionRegistry

if TYPE_CHECKING:
    from guiche.plugins.registry import PluginRegistry


@dataclass
class Services:
    settings: Settings
    db: PostgresEngine
    plugins: PluginRegistry
    permissions: PermissionRegistry
    redis: Redis | None = None
    http: httpx.AsyncClient | None = None
    extras: dict[str, Any] = field(default_factory=dict)


SERVICES = web.AppKey("guiche.services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]
