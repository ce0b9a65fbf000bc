"""The worker and scheduler loops, and the `guiche worker` / `guiche scheduler` processes.

Each loop runs until its `stop` event is set, so `guiche run` can host both beside the web
server in one event loop and the dedicated processes stop cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from taskiq import AsyncBroker, TaskiqScheduler
from taskiq.api import run_scheduler_task
from taskiq.receiver import Receiver
from taskiq.schedule_sources import LabelScheduleSource

from guiche.app import build_services, close_resources, open_resources
from guiche.foundation import gc_tuning
from guiche.foundation.config import ConfigError, Settings
from guiche.plugin_host.services import run_services, select_services
from guiche.runtime.services import Services
from guiche.tasks.queue import DRAIN_TIMEOUT_SECONDS, TaskQueue

log = logging.getLogger("guiche.tasks")

MAX_CONCURRENT_TASKS = 100
RECONNECT_DELAY_SECONDS = 2.0


async def consume(broker: AsyncBroker, stop: asyncio.Event) -> None:
    """Receive and run tasks until `stop` is set, then let the running ones finish.

    A lost broker connection is retried (the stream broker redelivers what was not
    acknowledged), so a Redis restart does not end the worker.
    """
    broker.is_worker_process = True
    with ThreadPoolExecutor(max_workers=4) as executor:
        while not stop.is_set():
            receiver = Receiver(
                broker,
                executor=executor,
                run_startup=False,
                max_async_tasks=MAX_CONCURRENT_TASKS,
                wait_tasks_timeout=DRAIN_TIMEOUT_SECONDS,
            )
            try:
                await receiver.listen(stop)
            except Exception:
                log.exception("task receiver failed; reconnecting")
                await _wait(stop, RECONNECT_DELAY_SECONDS)


async def schedule(broker: AsyncBroker, stop: asyncio.Event) -> None:
    """Kick every task whose TaskSpec has a schedule (`interval`/`cron`) until `stop` is set."""
    scheduler = TaskiqScheduler(broker, sources=[LabelScheduleSource(broker)])
    loop_task = asyncio.create_task(run_scheduler_task(scheduler))
    stop_task = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({loop_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (loop_task, stop_task):
            task.cancel()
        await asyncio.gather(loop_task, stop_task, return_exceptions=True)
    if loop_task in done:
        loop_task.result()  # the scheduler loop never ends by itself: surface its error


def require_redis(settings: Settings, command: str) -> None:
    """Dedicated workers and schedulers share work through Redis; in-memory cannot."""
    if not settings.redis_url:
        raise ConfigError(
            f"REDIS_URL: required for `guiche {command}` "
            "(without Redis, `guiche run` runs tasks in-process)"
        )


async def run_worker(
    settings: Settings, stop: asyncio.Event, *, extra_plugins: Iterable[tuple[str, Any]] = ()
) -> None:
    """`guiche worker`: the services opened (database pool, Redis, HTTP), tasks consumed."""
    require_redis(settings, "worker")
    services = build_services(settings, extra_plugins=extra_plugins)
    await open_resources(services)
    try:
        queue = TaskQueue.for_services(services)
        await queue.start()
        services.tasks = queue
        gc_tuning.tune_after_startup(settings)  # started: a history import's pace depends on it
        log.info("worker started", extra={"tasks": queue.names})
        plugin_services = select_services(services.plugins.services, worker=True)
        try:
            await asyncio.gather(
                consume(queue.broker, stop), run_services(services, plugin_services, stop)
            )
        finally:
            services.tasks = None
            await queue.stop()
    finally:
        await close_resources(services)
    log.info("worker stopped")


async def run_scheduler(
    settings: Settings, stop: asyncio.Event, *, extra_plugins: Iterable[tuple[str, Any]] = ()
) -> None:
    """`guiche scheduler` (exactly one per deployment): kicks periodic tasks, runs none."""
    require_redis(settings, "scheduler")
    services = build_services(settings, extra_plugins=extra_plugins)
    queue = TaskQueue.for_services(services)
    await queue.start()
    log.info("scheduler started", extra={"tasks": queue.names})
    try:
        await schedule(queue.broker, stop)
    finally:
        await queue.stop()
    log.info("scheduler stopped")


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass


async def run_service(
    settings: Settings,
    stop: asyncio.Event,
    names: Iterable[str],
    *,
    extra_plugins: Iterable[tuple[str, Any]] = (),
) -> None:
    """`guiche service NAME...`: plugin services on their own (scale-out), with the
    services opened and tasks kicked to Redis (or run in-process without it)."""
    services = build_services(settings, extra_plugins=extra_plugins)
    chosen = select_services(services.plugins.services, names=names)
    async with opened_with_tasks(services):
        await run_services(services, chosen, stop)


@contextlib.asynccontextmanager
async def opened_with_tasks(services: Services) -> AsyncIterator[Services]:
    """`services` open, with a task queue to kick on (Redis, or in-process without it):
    what a process that is neither web nor worker needs to run plugin code
    (`guiche service`, plugins' CLI commands)."""
    await open_resources(services)
    try:
        queue = TaskQueue.for_services(services)
        await queue.start()
        services.tasks = queue
        gc_tuning.tune_after_startup(services.settings)
        try:
            yield services
        finally:
            services.tasks = None
            await queue.stop()
    finally:
        await close_resources(services)
