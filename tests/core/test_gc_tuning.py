"""Every long-running process (`guiche web`, `guiche worker`, `guiche service`, plugin
commands) tunes the garbage collector once started, unless told not to."""

from __future__ import annotations

import asyncio
import gc
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from guiche import cli, worker
from guiche.app import build_services
from guiche.foundation import gc_tuning
from guiche.foundation.config import Settings
from tests.conftest import drop_task_queue


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record freezes instead of freezing the test process; restore the thresholds."""
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    threshold = gc.get_threshold()
    yield calls
    gc.set_threshold(*threshold)


def test_enabled_freezes_and_raises_the_young_threshold(collector: list[str]) -> None:
    gc.set_threshold(700, 10, 10)

    gc_tuning.tune_after_startup(Settings(gc_freeze=True, gc_threshold=50_000))

    assert collector == ["freeze"]
    assert gc.get_threshold() == (50_000, 10, 10)


def test_disabled_leaves_the_collector_alone(collector: list[str]) -> None:
    gc.set_threshold(700, 10, 10)

    gc_tuning.tune_after_startup(Settings(gc_freeze=False, gc_threshold=0))

    assert collector == []
    assert gc.get_threshold() == (700, 10, 10)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUICHE_GC_FREEZE", "false")
    monkeypatch.setenv("GUICHE_GC_THRESHOLD", "0")

    settings = Settings()

    assert settings.gc_freeze is False and settings.gc_threshold == 0


async def test_guiche_web_tunes_once_serving(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    stop = asyncio.Event()
    seen: list[Any] = []

    def tune(given: Settings) -> None:
        seen.append(given)
        stop.set()  # started: stop the server

    monkeypatch.setattr(cli, "stop_on_signals", lambda: stop)
    monkeypatch.setattr(gc_tuning, "tune_after_startup", tune)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serving = settings.model_copy(update={"port": port})

    assert await asyncio.wait_for(cli._serve_web(serving), 30) == 0
    assert seen == [serving]


async def test_a_worker_tunes_once_its_services_are_open(
    monkeypatch: pytest.MonkeyPatch, require_redis: str, make_settings: Any
) -> None:
    """The worker is where history imports run: with Python's default threshold the
    ChatGuru catalog spent about a third of its Python time collecting."""
    stop = asyncio.Event()
    seen: list[tuple[Settings, bool]] = []
    queue = f"guiche-test-gc:{uuid.uuid4().hex[:8]}"
    settings = make_settings(redis_url=require_redis, task_queue=queue)

    def tune(given: Settings) -> None:
        seen.append((given, given is settings))
        stop.set()

    monkeypatch.setattr(gc_tuning, "tune_after_startup", tune)
    try:
        await asyncio.wait_for(worker.run_worker(settings, stop), 30)
    finally:
        await drop_task_queue(require_redis, queue)
    assert seen == [(settings, True)]


async def test_services_and_plugin_commands_tune_once_open(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """`guiche service` and plugins' commands (`guiche chatguru catalog`) open their
    services with `opened_with_tasks`: tuned once open, before the command runs."""
    seen: list[Settings] = []
    monkeypatch.setattr(gc_tuning, "tune_after_startup", seen.append)

    async with worker.opened_with_tasks(build_services(settings)) as services:
        assert services.db.pool is not None
        assert seen == [settings]
