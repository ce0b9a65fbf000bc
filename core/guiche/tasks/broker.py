"""The taskiq broker for this process and the plugin tasks registered on it.

In-memory when no Redis is configured (`guiche run`, tests): a kick runs the task in
the same event loop. With `REDIS_URL`, the Redis *stream* broker: deliveries are
acknowledged after the result is saved and redelivered to another worker after
`IDLE_TIMEOUT_MS`, so a killed worker loses nothing (the list-queue broker would).
Delivery is therefore at-least-once and every task must be idempotent.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any

from redis.asyncio import Redis
from taskiq import (
    AckableMessage,
    AsyncBroker,
    InMemoryBroker,
    NoResultError,
    TaskiqMessage,
    TaskiqMiddleware,
    TaskiqResult,
)
from taskiq.serializers import JSONSerializer
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from guiche.foundation.config import Settings
from guiche.foundation.grouping import Grouper
from guiche.runtime.services import Services
from guiche.specs import TaskSpec

CONSUMER_GROUP = "guiche"
IDLE_TIMEOUT_MS = 5 * 60 * 1000
"""A delivery not acknowledged for this long is claimed by another worker."""
STREAM_MAXLEN = 1_000_000
"""Acknowledged entries stay in a Redis stream; trimming (approximate) bounds its memory."""
RESULT_TTL_SECONDS = 3600
NO_RESULT_LABEL = "guiche_no_result"
"""A kick labelled with this (True) stores no result: see `SkipResult`."""


class StreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, reclaiming idle deliveries on every pass.

    Upstream reclaims a dead worker's unacknowledged deliveries only after a read that
    returned new messages, so on a quiet queue they would wait for the next unrelated
    task. Here each pass (at most `xread_block` ms apart) also claims deliveries idle
    for longer than `idle_timeout`. XAUTOCLAIM is atomic: two workers never claim one.
    It also stops when cancelled mid-read (see `_honour_cancellation`), so a worker
    shuts down promptly.

    Acknowledgements are grouped: the deliveries that finish while one `XACK` is in
    flight are acknowledged together by the next (`guiche.foundation.grouping`). Each
    ack still returns only once its `XACK` is done, and no ack waits for a timer or for
    a group to fill: taskiq holds a delivery's slot until its ack returns, so an ack
    that waited for company would hold slots idle, and one that returned before its
    `XACK` would leave a delivery unacknowledged if the worker stopped then.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: dict[str, Grouper[str, None]] = {}

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """New deliveries, then the idle ones reclaimed, in turn until cancelled."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                fetched = await redis.xreadgroup(
                    self.consumer_group_name,
                    self.consumer_name,
                    {self.queue_name: ">"},
                    block=self.block,
                    noack=False,
                    count=self.count,
                )
                _honour_cancellation()
                for _stream, entries in fetched or []:
                    for entry_id, fields in entries:
                        yield self._delivery(entry_id, fields)
                claimed = await redis.xautoclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=self.idle_timeout,
                    count=self.unacknowledged_batch_size,
                )
                _honour_cancellation()
                for entry_id, fields in claimed[1]:
                    if fields:  # None: the entry was trimmed away meanwhile (Redis 6.2)
                        yield self._delivery(entry_id, fields)

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        grouper = self._acks.get(queue_name)
        if grouper is None:
            grouper = self._acks[queue_name] = Grouper(self._xack(queue_name), max_items=1000)

        async def ack() -> None:
            await grouper.submit(id)

        return ack

    def _xack(self, queue_name: str) -> Callable[[list[str]], Awaitable[list[None]]]:
        async def xack(ids: list[str]) -> list[None]:
            async with Redis(connection_pool=self.connection_pool) as redis:
                await redis.xack(queue_name, self.consumer_group_name, *ids)
            return [None] * len(ids)

        return xack

    def _delivery(self, entry_id: Any, fields: dict[bytes, bytes]) -> AckableMessage:
        return AckableMessage(
            data=fields[b"data"], ack=self._ack_generator(id=entry_id, queue_name=self.queue_name)
        )


def _honour_cancellation() -> None:
    """Re-raise a cancellation redis-py swallowed during a blocking read.

    A cancel that lands while XREADGROUP blocks comes back as an empty reply instead of
    CancelledError (redis-py 8); without this check the listener would loop forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class SkipResult(TaskiqMiddleware):
    """Keeps the result of a delivery kicked with `NO_RESULT_LABEL` out of the backend.

    A stored result is a Redis `SET` per task that nobody reads when the kicker never
    waits on it (`TaskQueue.fire`, e.g. every `core.send_message`). `NoResultError` in the
    result is taskiq's own "do not save" signal (its retry middlewares use it); the
    delivery is still acknowledged after the task, as before.
    """

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        if message.labels.get(NO_RESULT_LABEL) is True:
            result.error = NoResultError()


def make_broker(settings: Settings) -> AsyncBroker:
    """InMemoryBroker without `REDIS_URL`; the acknowledging Redis stream broker with it."""
    if not settings.redis_url:
        return InMemoryBroker().with_middlewares(SkipResult())
    results: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(
        settings.redis_url,
        result_ex_time=RESULT_TTL_SECONDS,
        serializer=JSONSerializer(),
        prefix_str=f"{settings.task_queue}:result",
    )
    broker = StreamBroker(
        settings.redis_url,
        queue_name=settings.task_queue,
        consumer_group_name=CONSUMER_GROUP,
        idle_timeout=IDLE_TIMEOUT_MS,
        maxlen=STREAM_MAXLEN,
    )
    return broker.with_result_backend(results).with_middlewares(SkipResult())


def schedule_labels(spec: TaskSpec) -> list[dict[str, Any]]:
    """TaskSpec.schedule as taskiq's `schedule` label: a list of `{"interval"|"cron": ...}`."""
    schedule: Any = spec.schedule
    if not schedule:
        return []
    if isinstance(schedule, Mapping):
        return [dict(schedule)]
    return [dict(item) for item in schedule]


def register_tasks(
    broker: AsyncBroker, specs: Mapping[str, TaskSpec], services: Callable[[], Services]
) -> list[str]:
    """Register each spec under its qualified name; returns the names registered."""
    for name, spec in specs.items():
        broker.register_task(
            _task_callable(spec, services), task_name=name, schedule=schedule_labels(spec)
        )
    return list(specs)


def _task_callable(spec: TaskSpec, services: Callable[[], Services]) -> Callable[..., Any]:
    """Wrap a plugin function so it receives `services=` when it declares that parameter.

    The wrapper's bare `*args, **kwargs` signature keeps taskiq from evaluating the
    plugin's annotations (which may name types imported only for type checking).
    """
    wants_services = "services" in inspect.signature(spec.func).parameters
    func = spec.func

    async def run(*args: Any, **kwargs: Any) -> Any:
        if wants_services:
            kwargs["services"] = services()
        return await func(*args, **kwargs)

    run.__name__ = getattr(func, "__name__", spec.name)
    run.__qualname__ = getattr(func, "__qualname__", spec.name)
    run.__doc__ = func.__doc__
    return run
