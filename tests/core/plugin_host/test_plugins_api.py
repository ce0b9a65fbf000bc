"""Per-tenant enablement through the API, exercised with the example third-party plugin."""

from __future__ import annotations

from typing import Any

from guiche.models import AuditLog, TenantPlugin
from guiche.plugin import PluginInfo, hookimpl

HELLO = "/api/v1/plugins/hello/hello"


class Needy:
    """Requires the example plugin: enabling it first needs hello enabled."""

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="needy", version="1", requires=("hello",))


async def test_example_route_is_404_until_the_tenant_enables_it(
    client: Any, make_company: Any, auth_headers: Any
) -> None:
    company, neighbour = await make_company(), await make_company()
    headers = await auth_headers(company.owner)

    resp = await client.get(HELLO, headers=headers)
    assert resp.status == 404
    body = await resp.json()
    assert body["error"]["code"] == "plugin_not_enabled"

    resp = await client.put("/api/v1/plugins/hello", json={"enabled": True}, headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["enabled"] is True

    resp = await client.get(HELLO, headers=headers)
    assert resp.status == 200
    assert await resp.json() == {"greeting": "Olá", "tenant": str(company.tenant_id)}

    resp = await client.get(HELLO, headers=await auth_headers(neighbour.owner))
    assert resp.status == 404


async def test_example_route_unauthenticated_is_401(client: Any) -> None:
    resp = await client.get(HELLO)
    assert resp.status == 401


async def test_settings_are_validated_and_used(
    client: Any, make_company: Any, auth_headers: Any
) -> None:
    company = await make_company()
    headers = await auth_headers(company.owner)

    resp = await client.put(
        "/api/v1/plugins/hello",
        json={"enabled": True, "settings": {"greeting": ""}},
        headers=headers,
    )
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_plugin_settings"
    assert [item["field"] for item in error["details"]] == ["settings.greeting"]
    assert not await TenantPlugin.exists().where(TenantPlugin.tenant == company.tenant_id)

    resp = await client.put(
        "/api/v1/plugins/hello",
        json={"enabled": True, "settings": {"greeting": "Bom dia"}},
        headers=headers,
    )
    assert resp.status == 200
    assert (await resp.json())["settings"] == {"greeting": "Bom dia"}
    resp = await client.get(HELLO, headers=headers)
    assert (await resp.json())["greeting"] == "Bom dia"


async def test_disabling_keeps_settings_and_gates_again(
    client: Any, make_company: Any, auth_headers: Any
) -> None:
    company = await make_company()
    headers = await auth_headers(company.owner)
    body = {"enabled": True, "settings": {"greeting": "Oi"}}
    assert (await client.put("/api/v1/plugins/hello", json=body, headers=headers)).status == 200

    resp = await client.put("/api/v1/plugins/hello", json={"enabled": False}, headers=headers)
    assert resp.status == 200
    assert (await resp.json())["settings"] == {"greeting": "Oi"}
    assert (await client.get(HELLO, headers=headers)).status == 404

    actions = await (
        AuditLog.select(AuditLog.action, AuditLog.data)
        .where((AuditLog.tenant == company.tenant_id) & (AuditLog.target_type == "plugin"))
        .order_by(AuditLog.id)
        .output(load_json=True)
    )
    assert [row["action"] for row in actions] == ["plugin.enabled", "plugin.disabled"]
    assert actions[0]["data"] == {
        "plugin": "hello",
        "enabled": True,
        "settings_changed": ["greeting"],
    }


async def test_list_shows_installed_plugins_with_state_and_schema(
    client: Any, make_company: Any, auth_headers: Any
) -> None:
    company = await make_company()
    headers = await auth_headers(company.owner)
    await client.put(
        "/api/v1/plugins/hello",
        json={"enabled": True, "settings": {"greeting": "E aí"}},
        headers=headers,
    )

    resp = await client.get("/api/v1/plugins", headers=headers)
    assert resp.status == 200
    body = await resp.json()
    assert body["next_cursor"] is None
    hello = next(item for item in body["items"] if item["name"] == "hello")
    assert hello["enabled"] is True
    assert hello["settings"] == {"greeting": "E aí"}
    assert hello["settings_valid"] is True
    assert hello["settings_schema"]["properties"]["greeting"]["default"] == "Olá"
    assert hello["description"]


async def test_managing_plugins_needs_the_permission(
    client: Any, make_company: Any, auth_headers: Any
) -> None:
    company = await make_company()
    viewer = await company.add("viewer")
    headers = await auth_headers(viewer)
    resp = await client.put("/api/v1/plugins/hello", json={"enabled": True}, headers=headers)
    assert resp.status == 403
    assert (await client.get("/api/v1/plugins", headers=headers)).status == 403


async def test_viewer_reads_hello_once_enabled(
    client: Any, make_company: Any, auth_headers: Any
) -> None:
    company = await make_company()
    owner = await auth_headers(company.owner)
    await client.put("/api/v1/plugins/hello", json={"enabled": True}, headers=owner)
    viewer = await company.add("viewer")
    resp = await client.get(HELLO, headers=await auth_headers(viewer))
    assert resp.status == 200


async def test_unknown_plugin_and_bad_body(
    client: Any, make_company: Any, auth_headers: Any
) -> None:
    company = await make_company()
    headers = await auth_headers(company.owner)
    resp = await client.put("/api/v1/plugins/nope", json={"enabled": True}, headers=headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "plugin_not_found"

    resp = await client.put("/api/v1/plugins/hello", json={"enable": True}, headers=headers)
    assert resp.status == 422
    fields = {item["field"] for item in (await resp.json())["error"]["details"]}
    assert fields == {"enabled", "enable"}


async def test_requirements_must_be_enabled_first(
    make_client: Any, make_company: Any, auth_headers: Any
) -> None:
    client = await make_client(extra_plugins=(("needy", Needy()),))
    company = await make_company()
    headers = await auth_headers(company.owner)

    resp = await client.put("/api/v1/plugins/needy", json={"enabled": True}, headers=headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "plugin_requirements"

    assert (
        await client.put("/api/v1/plugins/hello", json={"enabled": True}, headers=headers)
    ).status == 200
    resp = await client.put("/api/v1/plugins/needy", json={"enabled": True}, headers=headers)
    assert resp.status == 200

    resp = await client.put("/api/v1/plugins/hello", json={"enabled": False}, headers=headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "plugin_required"


async def test_blocked_plugin_is_neither_mounted_nor_listed(
    make_client: Any, make_company: Any, auth_headers: Any
) -> None:
    client = await make_client(plugins_blocked=["hello"])
    company = await make_company()
    headers = await auth_headers(company.owner)

    resp = await client.get(HELLO, headers=headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await client.get("/api/v1/plugins", headers=headers)
    assert "hello" not in [item["name"] for item in (await resp.json())["items"]]
    resp = await client.put("/api/v1/plugins/hello", json={"enabled": True}, headers=headers)
    assert resp.status == 404
