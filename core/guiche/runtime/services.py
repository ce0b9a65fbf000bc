"""The shared services container handed to routes, tasks and plugin hooks.

Web and worker processes build the same container, so a task and a route see the
same database engine, Redis client, HTTP client and plugin runtime.

It sits below the domain, so what the layers above provide — the plugin registry, the
hook runner, the task queue — is typed here by the few methods the domain calls on
them (`PluginCatalog`, `HookRunner`, `TaskKicker`); `guiche.app.build_services` puts
the real ones in.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from aiohttp import web
from piccolo.engine.postgres import PostgresEngine
from redis.asyncio import Redis

from guiche.foundation.config import Settings
from guiche.provider_http.call_log import CallRecorder
from guiche.ratelimit import MemoryRateLimiter, RateLimiter
from guiche.realtime.bus import EventBus, MemoryBus
from guiche.tenancy.rbac import PermissionRegistry

if TYPE_CHECKING:
    from pydantic import BaseModel

    from guiche.specs import ChannelSpec, TaskSpec


class PluginCatalog(Protocol):
    """What the domain asks of the plugin registry (`guiche.plugin_host.registry`)."""

    def channel_type(self, name: str) -> tuple[str, ChannelSpec] | None: ...

    def validate_settings(
        self, plugin: str, data: dict[str, Any]
    ) -> BaseModel | dict[str, Any]: ...

    tasks: dict[str, TaskSpec]


class HookRunner(Protocol):
    """Runs the tenant's plugins' event hooks (`guiche.plugin_host.runner.EventRunner`)."""

    async def emit(self, tenant_id: uuid.UUID, hook_name: str, **kwargs: Any) -> list[Any]: ...

    async def first_result(self, tenant_id: uuid.UUID, hook_name: str, **kwargs: Any) -> Any: ...


class TaskKicker(Protocol):
    """Enqueues background tasks by name (`guiche.tasks.queue.TaskQueue`)."""

    async def kick(self, name: str, *args: Any, **kwargs: Any) -> Any: ...

    async def fire(self, name: str, *args: Any, **kwargs: Any) -> None: ...


class NoHooks:
    """The hook runner until the plugin host installs its own: no plugin, no hook."""

    async def emit(self, tenant_id: uuid.UUID, hook_name: str, **kwargs: Any) -> list[Any]:
        return []

    async def first_result(self, tenant_id: uuid.UUID, hook_name: str, **kwargs: Any) -> Any:
        return None


@dataclass
class Services:
    settings: Settings
    db: PostgresEngine
    plugins: PluginCatalog
    permissions: PermissionRegistry
    redis: Redis | None = None
    http: httpx.AsyncClient | None = None
    call_log: CallRecorder | None = None  # writes `provider_calls` for `http` while open
    extras: dict[str, Any] = field(default_factory=dict)
    # Redis-backed once open_resources runs with Redis configured (see guiche.ratelimit).
    limiter: RateLimiter = field(default_factory=MemoryRateLimiter)
    tasks: TaskKicker | None = None  # set while the app or worker runs: `await tasks.kick(...)`
    events: HookRunner = field(default_factory=NoHooks, repr=False)  # the host's runner
    # In-process by default; a RedisBus once open_resources runs with Redis configured.
    bus: EventBus = field(default_factory=MemoryBus)
    background: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)
    # Concurrent webhooks' shared transactions (guiche.inbound.coalesce), made on first use.
    ingest_queue: Any = field(default=None, repr=False)
    # Concurrent sends' shared claim and settle statements (guiche.outbound.groups).
    send_groups: Any = field(default=None, repr=False)
    # Concurrent kicks of core.send_message sharing one task (guiche.outbound.service).
    send_kicks: Any = field(default=None, repr=False)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run follow-up work (plugin hooks) after a response, keeping a reference until done."""
        task = asyncio.create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logging.getLogger("guiche").error(
                "background task %s failed", task.get_name(), exc_info=task.exception()
            )

    async def wait_background(self) -> None:
        """Let in-flight follow-ups finish (shutdown, and tests that check their effects)."""
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)


SERVICES = web.AppKey("guiche.runtime.services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]
