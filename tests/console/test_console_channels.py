"""Channels in the console: the setup form drawn from a type's credentials schema
(`GET /api/v1/channel-types`), and linking a QR-session channel's phone."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from guiche.plugin import publish_event
from guiche.runtime.services import SERVICES
from tests.conftest import login
from tests.console.conftest import Shop, sign_in
from tests.console.plugins_for_tests import QrChannelPlugin


@pytest.fixture
def qr_plugin() -> QrChannelPlugin:
    return QrChannelPlugin()


@pytest.fixture
def extra_plugins(qr_plugin: QrChannelPlugin) -> tuple[tuple[str, Any], ...]:
    return (("qrfake", qr_plugin),)


async def test_channel_types_list_the_enabled_plugins_types_with_their_schema(
    client: Any, shop: Shop
) -> None:
    owner = await login(client, shop.company.owner)
    agent = await login(client, shop.agent)
    resp = await client.get("/api/v1/channel-types", headers=owner)
    assert resp.status == 200
    assert [t["type"] for t in (await resp.json())["items"]] == ["fake"]  # qrfake not enabled
    await client.put("/api/v1/plugins/qrfake", json={"enabled": True}, headers=owner)
    items = (await (await client.get("/api/v1/channel-types", headers=owner)).json())["items"]
    qr = next(t for t in items if t["type"] == "qrfake")
    assert qr["plugin"] == "qrfake" and "qr_session" in qr["capabilities"]
    schema = qr["credentials_schema"]
    assert schema["required"] == ["server_url", "api_key"]
    assert schema["properties"]["api_key"]["format"] == "password"
    assert (await client.get("/api/v1/channel-types", headers=agent)).status == 403


async def test_an_admin_creates_a_qr_channel_from_the_form_and_links_the_phone(
    open_tab: Any, shop: Shop, client: Any, server: Any, qr_plugin: QrChannelPlugin
) -> None:
    owner = await login(client, shop.company.owner)
    await client.put("/api/v1/plugins/qrfake", json={"enabled": True}, headers=owner)
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await page.get_by_role("link", name="Channels").click()
    await page.get_by_role("button", name="Add channel").click()
    dialog = page.get_by_role("dialog", name="Add channel")
    await dialog.get_by_label("Type").select_option("qrfake")
    await dialog.get_by_label("Name *").fill("WhatsApp QR")
    await dialog.get_by_label("Server URL *").fill("http://sessions.example.test")
    await dialog.get_by_label("API key *").fill("s3cret")
    await dialog.get_by_label("Default department").select_option(label="Vendas")
    await tab.shot("channel-form")
    await dialog.get_by_role("button", name="Create").click()

    qr = page.get_by_role("dialog", name="Link phone — WhatsApp QR")
    await expect(qr.get_by_role("img")).to_be_visible()
    await tab.shot("channel-qr")
    rows = await (await client.get("/api/v1/channels", headers=owner)).json()
    created = next(c for c in rows["items"] if c["name"] == "WhatsApp QR")
    assert created["type"] == "qrfake"
    assert created["default_department_id"] == str(shop.department_id)
    assert created["credentials"]["api_key"] != "s3cret"  # stored, shown masked

    qr_plugin.connected.add(created["id"])  # the phone scanned the code
    await publish_event(
        server.app[SERVICES], shop.company.tenant_id, "channel.qr", {"channel_id": created["id"]}
    )
    await expect(qr.get_by_role("status")).to_have_text("Connected.")
    await qr.get_by_role("button", name="Done").click()
    await expect(page.locator(f"tr[data-channel='{created['id']}']")).to_contain_text("WhatsApp QR")
