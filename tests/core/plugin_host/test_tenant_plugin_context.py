"""`guiche.plugin.tenant_plugin_context`: a plugin's context for one company outside a
request (background tasks), with its validated settings; None when it is off."""

from __future__ import annotations

from typing import Any

from guiche.companies.enablement import plugins_changed
from guiche.plugin import tenant_plugin_context
from guiche.runtime.services import SERVICES

from .conftest import EnablePlugin


async def test_context_of_an_enabled_plugin_has_its_settings(
    client: Any, make_company: Any, enable_plugin: EnablePlugin
) -> None:
    services = client.server.app[SERVICES]
    company, neighbour = await make_company(), await make_company()
    await enable_plugin(company.tenant_id, "hello", {"greeting": "Bom dia"})
    ctx = await tenant_plugin_context(services, company.tenant_id, "hello")
    assert ctx is not None
    assert ctx.tenant_id == company.tenant_id and ctx.plugin == "hello"
    assert ctx.settings.greeting == "Bom dia"
    assert ctx.services is services
    assert await tenant_plugin_context(services, neighbour.tenant_id, "hello") is None


async def test_disabled_or_invalid_settings_give_none(
    client: Any, make_company: Any, enable_plugin: EnablePlugin, caplog: Any
) -> None:
    services = client.server.app[SERVICES]
    company = await make_company()
    await enable_plugin(company.tenant_id, "hello", {"greeting": "Oi"}, enabled=False)
    assert await tenant_plugin_context(services, company.tenant_id, "hello") is None
    await enable_plugin(company.tenant_id, "hello", {"greeting": ""})  # below min_length
    await plugins_changed(services, company.tenant_id)  # written behind the API's back
    assert await tenant_plugin_context(services, company.tenant_id, "hello") is None
    assert "invalid" in caplog.text
