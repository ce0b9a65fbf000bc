"""The first-party plugins' console pages: reports' indicators and campaigns' list, in
the menu once the company enables the plugin, drawn from the plugins' own APIs and
updated live from their events."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from guiche.plugin import publish_event
from guiche.runtime.services import SERVICES
from tests.conftest import login

from .conftest import Shop, sign_in


async def _enable(client: Any, shop: Shop, plugin: str) -> dict[str, str]:
    owner = await login(client, shop.company.owner)
    resp = await client.put(f"/api/v1/plugins/{plugin}", json={"enabled": True}, headers=owner)
    assert resp.status == 200, await resp.text()
    return owner


async def test_the_reports_page_shows_todays_indicators(
    open_tab: Any, shop: Shop, client: Any
) -> None:
    await _enable(client, shop, "reports")
    tab = await open_tab()
    await sign_in(tab, shop.company.owner)
    await tab.page.get_by_role("link", name="Reports").click()
    await expect(tab.page.locator('dd[data-indicator="today"]')).to_have_text("0")
    await expect(tab.page.locator('dd[data-indicator="sla"]')).to_have_text("—")
    await tab.shot("reports-page")


async def test_the_campaigns_page_lists_campaigns_and_follows_their_progress(
    open_tab: Any, shop: Shop, client: Any
) -> None:
    owner = await _enable(client, shop, "campaigns")
    resp = await client.post(
        "/api/v1/plugins/campaigns/campaigns",
        json={
            "name": "Black Friday",
            "channel_id": str(shop.channel_id),
            "content": {"type": "text", "text": "Olá!"},
        },
        headers=owner,
    )
    assert resp.status == 201, await resp.text()
    campaign = await resp.json()
    tab = await open_tab()
    await sign_in(tab, shop.company.owner)
    await tab.page.get_by_role("link", name="Campaigns").click()
    row = tab.page.locator(f'tr[data-campaign="{campaign["id"]}"]')
    await expect(row).to_contain_text("Black Friday")
    await expect(row).to_contain_text("draft")
    await tab.page.wait_for_timeout(300)  # the page's socket is subscribed
    services = client.app[SERVICES]
    await publish_event(
        services,
        shop.company.tenant_id,
        "campaign.progress",
        {"campaign_id": campaign["id"], "status": "running", "counts": {"sent": 3, "pending": 7}},
    )
    await expect(row).to_contain_text("running")
    await expect(row).to_contain_text("3 / 10")
