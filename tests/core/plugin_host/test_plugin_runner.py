"""The event runner: enabled tenants only, a timeout and an exception boundary per plugin."""

from __future__ import annotations

import asyncio
from typing import Any

import guiche_hello
from prometheus_client import REGISTRY
from pydantic import BaseModel

from guiche.plugin import PluginContext, PluginInfo, hookimpl
from guiche.runtime.services import SERVICES


def failures(plugin: str, hook: str, reason: str) -> float:
    labels = {"plugin": plugin, "hook": hook, "reason": reason}
    return REGISTRY.get_sample_value("guiche_plugin_hook_failures_total", labels) or 0.0


class Slow:
    """Never finishes on its own: only the runner's timeout ends it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="slow", version="1")

    @hookimpl
    async def guiche_on_message(self, ctx: PluginContext, message: Any) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Boom:
    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="boom", version="1")

    @hookimpl
    async def guiche_on_message(self, ctx: PluginContext, message: Any) -> None:
        raise RuntimeError("plugin bug")


class Strict(BaseModel):
    threshold: int


class Picky:
    """Has required settings: a tenant row with bad settings must not reach the hook."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="picky", version="1", settings_model=Strict)

    @hookimpl
    async def guiche_on_message(self, ctx: PluginContext, message: Any) -> str:
        assert isinstance(ctx.settings, Strict)
        self.seen.append(ctx.settings.threshold)
        return "picky saw it"


def received_by(tenant_id: Any) -> list[Any]:
    return [message for tenant, message in guiche_hello.RECEIVED if tenant == tenant_id]


async def test_hello_hook_runs_only_for_tenants_that_enabled_it(
    client: Any, make_company: Any, enable_plugin: Any
) -> None:
    events = client.app[SERVICES].events
    enabled, other = await make_company(), await make_company()
    await enable_plugin(enabled.tenant_id, "hello")
    await enable_plugin(other.tenant_id, "hello", enabled=False)

    await events.emit(enabled.tenant_id, "guiche_on_message", message={"text": "oi"})
    await events.emit(other.tenant_id, "guiche_on_message", message={"text": "oi"})

    assert received_by(enabled.tenant_id) == [{"text": "oi"}]
    assert received_by(other.tenant_id) == []


async def test_slow_and_raising_hooks_are_isolated(
    make_client: Any, make_company: Any, enable_plugin: Any
) -> None:
    slow, picky = Slow(), Picky()
    client = await make_client(
        extra_plugins=(("slow", slow), ("boom", Boom()), ("picky", picky)),
        event_hook_timeout_seconds=0.05,
    )
    company = await make_company()
    for name in ("slow", "boom", "hello"):
        await enable_plugin(company.tenant_id, name)
    await enable_plugin(company.tenant_id, "picky", {"threshold": 3})
    before_timeout = failures("slow", "guiche_on_message", "timeout")
    before_error = failures("boom", "guiche_on_message", "error")

    results = await client.app[SERVICES].events.emit(
        company.tenant_id, "guiche_on_message", message="hello?"
    )

    assert results == ["picky saw it"]
    assert picky.seen == [3]
    assert received_by(company.tenant_id) == ["hello?"]
    assert slow.started.is_set() and slow.cancelled
    assert failures("slow", "guiche_on_message", "timeout") == before_timeout + 1
    assert failures("boom", "guiche_on_message", "error") == before_error + 1


async def test_invalid_stored_settings_skip_only_that_plugin(
    make_client: Any, make_company: Any, enable_plugin: Any
) -> None:
    picky = Picky()
    client = await make_client(extra_plugins=(("picky", picky),))
    company = await make_company()
    await enable_plugin(company.tenant_id, "picky", {"threshold": "many"})
    await enable_plugin(company.tenant_id, "hello")
    before = failures("picky", "guiche_on_message", "settings")

    results = await client.app[SERVICES].events.emit(
        company.tenant_id, "guiche_on_message", message="x"
    )

    assert results == []
    assert picky.seen == []
    assert received_by(company.tenant_id) == ["x"]
    assert failures("picky", "guiche_on_message", "settings") == before + 1


async def test_hook_without_implementations_is_a_no_op(client: Any, company: Any) -> None:
    events = client.app[SERVICES].events
    assert await events.emit(company.tenant_id, "guiche_on_channel_state", channel=1, state=2) == []
