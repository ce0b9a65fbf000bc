"""The shared services container handed to routes, tasks and plugin hooks.

Web and worker processes build the same container, so a task and a route see the
same database engine, Redis client, HTTP client and plugin runtime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from aiohttp import web
from piccolo.engine.postgres import PostgresEngine
from redis.asyncio import Redis

from guiche.config import Settings
from guiche.ratelimit import MemoryRateLimiter, RateLimiter
from guiche.rbac import PermissionRegistry
from guiche.realtime.bus import EventBus, MemoryBus

if TYPE_CHECKING:
    from guiche.plugins.registry import PluginRegistry
    from guiche.plugins.runner import EventRunner
    from guiche.tasks.queue import TaskQueue


@dataclass
class Services:
    settings: Settings
    db: PostgresEngine
    plugins: PluginRegistry
    permissions: PermissionRegistry
    redis: Redis | None = None
    http: httpx.AsyncClient | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # Redis-backed once open_resources runs with Redis configured (see guiche.ratelimit).
    limiter: RateLimiter = field(default_factory=MemoryRateLimiter)
    tasks: TaskQueue | None = None  # set while the app or worker runs: `await tasks.kick(...)`
    events: EventRunner = field(init=False, repr=False)
    # In-process by default; a RedisBus once open_resources runs with Redis configured.
    bus: EventBus = field(default_factory=MemoryBus)
    background: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        # Imported here: the runner builds contexts that carry this container.
        from guiche.plugins.runner import EventRunner

        self.events = EventRunner(self)

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


SERVICES = web.AppKey("guiche.services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]
