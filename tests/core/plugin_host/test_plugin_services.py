"""The `guiche_services` hook: collected per plugin, supervised (restarted after a crash,
stopped by one event), selected per process, and `guiche service` on its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from guiche.cli import main
from guiche.plugin import PluginInfo, ServiceSpec, hookimpl
from guiche.plugin_host.manager import PluginError, build_plugin_manager
from guiche.plugin_host.registry import PluginRegistry
from guiche.plugin_host.services import (
    UnknownService,
    run_services,
    select_services,
    supervise,
)


class Svc:
    def __init__(self, name: str, specs: list[Any]) -> None:
        self.name, self.specs = name, specs

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, version="1")

    @hookimpl
    def guiche_services(self) -> list[Any]:
        return self.specs


async def waits(services: Any, stop: asyncio.Event) -> None:
    await stop.wait()


def registry(*plugins: Svc) -> PluginRegistry:
    extra = [(plugin.name, plugin) for plugin in plugins]
    return PluginRegistry.from_manager(build_plugin_manager(extra=extra))


def test_services_are_qualified_by_plugin() -> None:
    found = registry(Svc("a", [ServiceSpec("loop", waits)]), Svc("b", [ServiceSpec("loop", waits)]))
    assert set(found.services) >= {"a.loop", "b.loop"}


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([ServiceSpec("loop", waits), ServiceSpec("loop", waits)], "duplicate service"),
        ([ServiceSpec("a.b", waits)], "no dots"),
        ([ServiceSpec("sync", lambda services, stop: None)], "async def"),
        (["not a spec"], "ServiceSpec items"),
    ],
)
def test_bad_services_fail_start_up_naming_the_plugin(specs: list[Any], message: str) -> None:
    with pytest.raises(PluginError, match=f"'bad'.*{message}"):
        registry(Svc("bad", specs))


def test_selection_per_process() -> None:
    specs = {
        "p.always": ServiceSpec("always", waits),
        "p.alone": ServiceSpec("alone", waits, with_worker=False),
    }
    assert set(select_services(specs)) == {"p.always", "p.alone"}  # guiche run
    assert set(select_services(specs, worker=True)) == {"p.always"}  # guiche worker
    assert set(select_services(specs, names=["p.alone"])) == {"p.alone"}  # guiche service
    with pytest.raises(UnknownService, match=r"p\.nope"):
        select_services(specs, names=["p.nope"])


async def test_a_crashed_service_is_restarted_until_stop() -> None:
    stop = asyncio.Event()
    runs: list[int] = []

    async def flaky(services: Any, stop_event: asyncio.Event) -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError("boom")
        await stop_event.wait()

    task = asyncio.create_task(
        supervise("p.flaky", ServiceSpec("flaky", flaky), None, stop, delay=0.01)  # type: ignore[arg-type]
    )
    for _ in range(200):
        if len(runs) == 3:
            break
        await asyncio.sleep(0.01)
    assert runs == [0, 1, 2]
    stop.set()
    await asyncio.wait_for(task, 1)


async def test_run_services_runs_all_and_stops_together() -> None:
    stop = asyncio.Event()
    seen: list[str] = []

    def make(name: str) -> Any:
        async def func(services: Any, stop_event: asyncio.Event) -> None:
            seen.append(name)
            await stop_event.wait()

        return func

    specs = {f"p.{n}": ServiceSpec(n, make(n)) for n in ("one", "two")}
    task = asyncio.create_task(run_services(None, specs, stop))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert sorted(seen) == ["one", "two"]
    stop.set()
    await asyncio.wait_for(task, 1)


def test_cli_service_names_an_unknown_service(
    monkeypatch: pytest.MonkeyPatch, database_url: str, encryption_key: str, capsys: Any
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("GUICHE_ENCRYPTION_KEYS", encryption_key)
    monkeypatch.setenv("GUICHE_SECRET_KEY", "x" * 40)
    assert main(["service", "nobody.nothing"]) == 1
    assert "no service 'nobody.nothing'" in capsys.readouterr().err


def test_cli_service_without_names_lists_them(capsys: Any) -> None:
    assert main(["service"]) == 0
    assert "SERVICE" in capsys.readouterr().out
