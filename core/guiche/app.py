"""The app factory: one explicit place where settings, plugins, routes and resources meet."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from guiche.api import CORE_ROUTE_TABLES
from guiche.api.webhooks import routes as webhook_routes
from guiche.console.routes import setup_console
from guiche.database.engine import (
    POOL_SERVER_SETTINGS,
    bind_tables,
    make_engine,
    start_pool_waiting,
    storage_flavor,
)
from guiche.foundation.config import ConfigError, Settings, load_settings
from guiche.models import CORE_TABLES
from guiche.plugin_host.manager import build_plugin_manager
from guiche.plugin_host.mount import mount_plugin_routes, plugin_gate_middleware
from guiche.plugin_host.registry import PluginRegistry
from guiche.plugin_host.runner import EventRunner
from guiche.provider_http.call_log import CallRecorder
from guiche.provider_http.client import outbound_client
from guiche.ratelimit import build_limiter
from guiche.realtime.bus import RedisBus, bus_channel
from guiche.runtime.services import SERVICES, Services
from guiche.tasks.queue import tasks_context
from guiche.tenancy.rbac import PermissionRegistry
from guiche.web.authentication import auth_middleware, check_auth_settings
from guiche.web.middleware import error_middleware, stepping_aside
from guiche.web.observability import request_context_middleware, setup_observability
from guiche.web.openapi import setup_openapi
from guiche.web.ratelimit import rate_limit_middleware
from guiche.web.security import cors_middleware, security_headers_middleware
from guiche.websocket.ws import WS_PATH, setup_realtime

log = logging.getLogger("guiche")


def build_services(
    settings: Settings, *, extra_plugins: Iterable[tuple[str, Any]] = ()
) -> Services:
    """Plugins, permissions and the (not yet connected) engine: shared by web and worker."""
    if not settings.database_url:
        raise ConfigError(
            "DATABASE_URL: required here (`guiche run` starts an embedded Postgres when unset)"
        )
    pm = build_plugin_manager(blocked=settings.plugins_blocked, extra=extra_plugins)
    registry = PluginRegistry.from_manager(pm)
    permissions = PermissionRegistry(registry.permission_grants())
    engine = make_engine(settings.database_url)
    bind_tables(engine, [*CORE_TABLES, *registry.tables()])
    services = Services(settings=settings, db=engine, plugins=registry, permissions=permissions)
    services.events = EventRunner(services)
    return services


async def open_resources(services: Services) -> None:
    settings = services.settings
    await start_pool_waiting(
        services.db,
        wait_seconds=settings.db_startup_wait_seconds,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        server_settings=POOL_SERVER_SETTINGS,
    )
    if settings.redis_url:
        services.redis = Redis.from_url(settings.redis_url)
    services.limiter = build_limiter(services.redis, settings.database_url)
    if services.redis is not None:
        services.bus = RedisBus(services.redis, bus_channel(settings.database_url))
    await services.bus.start()
    services.call_log = CallRecorder(services.db)
    services.call_log.start()
    # httpx API, aiohttp transport: see its module; every call offered to the call log
    services.http = outbound_client(recorder=services.call_log)


async def close_resources(services: Services) -> None:
    await services.wait_background()
    await services.bus.stop()
    if services.http is not None:
        await services.http.aclose()
    if services.call_log is not None:
        await services.call_log.stop()  # writes what is still buffered
    if services.redis is not None:
        await services.redis.aclose()
    await services.db.close_connection_pool()


#: Served without middleware: a socket's upgrade request lives as long as the socket
#: (see `guiche.web.middleware.stepping_aside`); its handler authenticates itself.
SOCKET_PATHS = frozenset({WS_PATH})


def create_app(
    settings: Settings | None = None, *, extra_plugins: Iterable[tuple[str, Any]] = ()
) -> web.Application:
    """Build the web application. `extra_plugins` registers in-process plugins (tests)."""
    settings = settings or load_settings()
    check_auth_settings(settings)
    services = build_services(settings, extra_plugins=extra_plugins)
    app = web.Application(
        middlewares=[
            stepping_aside(SOCKET_PATHS, middleware)
            for middleware in (
                request_context_middleware,
                error_middleware,
                security_headers_middleware,
                cors_middleware,
                auth_middleware,
                rate_limit_middleware,
                plugin_gate_middleware,
            )
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[SERVICES] = services
    for table in CORE_ROUTE_TABLES:
        app.add_routes(table)
    mount_plugin_routes(app, services.plugins)
    app.add_routes(webhook_routes)  # after plugins' own /webhooks/<name>/... routes
    setup_observability(app)
    setup_openapi(app)
    setup_console(app)  # `/` and /console/...: the web console

    async def resources(app: web.Application) -> AsyncIterator[None]:
        await open_resources(services)
        flavor = await storage_flavor(services.db)
        log.info("database ready", extra={"storage": flavor})
        services.extras["storage_flavor"] = flavor
        yield
        await close_resources(services)

    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(tasks_context(services))  # opened after resources, closed before
    setup_realtime(app)  # /ws and the hub: subscribes once the bus is open
    return app
