"""The done-when of the console, as `make run` leaves it: a company with nothing but the
demo's sandbox channel, its owner signed in, and a customer's message posted to the
channel's webhook appearing in the open inbox without a reload; the reply is marked
sent and a posted tick reaches the page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import expect

from guiche.channel_host.demo_channel import SAMPLE_MESSAGE, SECRET_HEADER, seed_demo_channel
from guiche.runtime.services import SERVICES
from tests.console.conftest import sign_in
from tests.core.conversations.conftest import fetch


async def test_a_message_posted_to_the_demo_channel_appears_live_and_the_reply_is_ticked(
    open_tab: Any, server: Any, client: Any, make_company: Any
) -> None:
    company = await make_company("Demo do Console")
    demo = await seed_demo_channel(server.app[SERVICES], company.tenant_id)
    assert demo is not None
    webhook = urlsplit(demo.webhook_url).path
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, company.owner)
    await expect(page.locator(".conversations li")).to_have_count(0)

    posted = await client.post(
        webhook, json=SAMPLE_MESSAGE, headers={SECRET_HEADER: demo.webhook_secret}
    )
    assert posted.status == 200, await posted.text()
    item = page.locator(".conversations .conv", has_text="Maria Souza")
    await expect(item).to_be_visible()  # no reload: it came over the WebSocket
    await expect(item).to_contain_text(SAMPLE_MESSAGE["text"])

    await item.click()
    await page.get_by_role("button", name="Accept").click()
    await page.get_by_label("Reply").fill("Chega amanhã!")
    await page.keyboard.press("Enter")
    reply = page.locator(".msg.out", has_text="Chega amanhã!")
    await expect(reply).to_have_attribute("data-status", "sent")

    [row] = await fetch(
        "SELECT provider_message_id FROM messages WHERE channel = {} AND direction = 'out'",
        demo.id,
    )
    tick = {"statuses": [{"id": row["provider_message_id"], "status": "read"}]}
    posted = await client.post(webhook, json=tick, headers={SECRET_HEADER: demo.webhook_secret})
    assert posted.status == 200, await posted.text()
    await expect(reply).to_have_attribute("data-status", "read")
