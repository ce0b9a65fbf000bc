"""A process's task queue: one broker with every plugin task on it, reachable via Services.

Routes and event hooks enqueue work with `services.tasks.kick("<plugin>.<name>", ...)`;
plugins never touch the broker. Arguments travel as JSON, so pass ids, not rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from taskiq import AsyncBroker, AsyncTaskiqTask, InMemoryBroker

from guiche.runtime.services import Services
from guiche.tasks.broker import NO_RESULT_LABEL, make_broker, register_tasks
from guiche.tasks.core import core_tasks

log = logging.getLogger("guiche.tasks")

DRAIN_TIMEOUT_SECONDS = 30.0
"""How long shutdown waits for in-process (in-memory broker) tasks to finish."""


class UnknownTask(LookupError):
    """Kicked a task name no installed plugin registered."""


class TaskQueue:
    """The broker plus the services its tasks run with."""

    def __init__(self, broker: AsyncBroker, services: Services, names: list[str]) -> None:
        self.broker = broker
        self.services = services
        self.names = names

    @classmethod
    def for_services(cls, services: Services) -> TaskQueue:
        """Make this process's broker and register core's and the installed plugins' tasks."""
        broker = make_broker(services.settings)
        queue = cls(broker, services, [])
        specs = core_tasks()
        clash = sorted(set(specs) & set(services.plugins.tasks))
        if clash:
            raise ValueError(f"plugin tasks collide with core tasks: {clash}")
        specs.update(services.plugins.tasks)
        queue.names = register_tasks(broker, specs, lambda: queue.services)
        return queue

    @property
    def in_process(self) -> bool:
        """True when a kick runs the task in this process (no Redis configured)."""
        return isinstance(self.broker, InMemoryBroker)

    async def start(self) -> None:
        await self.broker.startup()

    async def stop(self) -> None:
        """Let in-process tasks finish (bounded), then close the broker's connections."""
        if isinstance(self.broker, InMemoryBroker):
            try:
                async with asyncio.timeout(DRAIN_TIMEOUT_SECONDS):
                    await self.broker.wait_all()
            except TimeoutError:
                log.warning("in-process tasks still running at shutdown were cancelled")
        await self.broker.shutdown()

    async def kick(self, name: str, *args: Any, **kwargs: Any) -> AsyncTaskiqTask[Any]:
        """Enqueue task `name` (`<plugin>.<task>`) with JSON-serialisable arguments."""
        task = self.broker.find_task(name)
        if task is None:
            raise UnknownTask(name)
        return await task.kiq(*args, **kwargs)

    async def fire(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Enqueue like `kick` for a caller that never reads the result: none is stored."""
        task = self.broker.find_task(name)
        if task is None:
            raise UnknownTask(name)
        await task.kicker().with_labels(**{NO_RESULT_LABEL: True}).kiq(*args, **kwargs)


def tasks_context(
    services: Services,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup_ctx that opens the queue after the app's resources, closes it before."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        queue = TaskQueue.for_services(services)
        await queue.start()
        services.tasks = queue
        yield
        await queue.stop()
        services.tasks = None

    return context
