"""What `guiche plugins` shows: installed plugins, their hooks, and how many tenants use them."""

from __future__ import annotations

from typing import Any

from guiche.plugin_host.listing import describe_plugins, format_plugins_table
from guiche.runtime.services import SERVICES


async def test_describe_counts_enabled_tenants(
    client: Any, make_company: Any, enable_plugin: Any
) -> None:
    registry = client.app[SERVICES].plugins
    before = next(row for row in await describe_plugins(registry) if row["name"] == "hello")
    first, second = await make_company(), await make_company()
    await enable_plugin(first.tenant_id, "hello")
    await enable_plugin(second.tenant_id, "hello", enabled=False)

    rows = await describe_plugins(registry)

    hello = next(row for row in rows if row["name"] == "hello")
    assert hello["tenants_enabled"] == before["tenants_enabled"] + 1
    assert hello["hooks"] == registry.hook_names("hello")
    assert hello["version"] == registry.infos["hello"].version


def test_format_plugins_table() -> None:
    rows = [
        {"name": "hello", "version": "0.1.0", "tenants_enabled": 3, "hooks": ["guiche_routes"]},
        {"name": "meta_cloud", "version": "1.2", "tenants_enabled": None, "hooks": []},
    ]
    assert format_plugins_table(rows).splitlines() == [
        "NAME        VERSION  TENANTS  HOOKS",
        "hello       0.1.0    3        routes",
        "meta_cloud  1.2      -        -",
    ]
    assert format_plugins_table([]) == "No plugins installed."


async def test_describe_without_a_database_lists_without_counts(
    client: Any, monkeypatch: Any
) -> None:
    from piccolo.engine.postgres import PostgresEngine

    from guiche.models import TenantPlugin

    unreachable = PostgresEngine(config={"dsn": "postgresql://postgres@127.0.0.1:1/none"})
    monkeypatch.setattr(TenantPlugin._meta, "db", unreachable)
    rows = await describe_plugins(client.app[SERVICES].plugins)
    assert [row["tenants_enabled"] for row in rows if row["name"] == "hello"] == [None]
