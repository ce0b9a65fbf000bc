"""A long conversation in the browser: older pages load as the agent scrolls up (cursor
pagination), and delivery ticks follow the provider's status webhooks live."""

from __future__ import annotations

import datetime as dt
from typing import Any

from playwright.async_api import expect

from guiche.channels import DeliveryStatus, StatusUpdate
from tests.console.conftest import Shop, inbound, sign_in


async def test_scrolling_up_loads_older_messages_until_the_first(
    open_tab: Any, shop: Shop, post_webhook: Any
) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    history = [
        inbound(f"mensagem {n:02d}").model_copy(
            update={"timestamp": start + dt.timedelta(minutes=n)}
        )
        for n in range(70)
    ]
    await post_webhook(shop.channel_id, history)
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await page.locator(".conversations .conv", has_text="Ana Souza").click()
    newest = page.locator(".msg", has_text="mensagem 69")
    await expect(newest).to_be_in_viewport()  # the newest, scrolled into view
    await expect(page.locator(".msg")).to_have_count(30)  # one page
    for _ in range(10):
        await page.locator(".messages").evaluate("el => { el.scrollTop = 0; }")
        if await page.locator(".msg", has_text="mensagem 00").count():
            break
        await page.wait_for_timeout(200)
    await expect(page.locator(".msg", has_text="mensagem 00")).to_be_attached()
    await expect(page.locator(".msg")).to_have_count(70)
    await expect(page.locator(".older")).to_have_count(0)  # nothing older left
    texts = await page.locator(".msg .body").all_inner_texts()
    assert texts == [f"mensagem {n:02d}" for n in range(70)]  # in order, none twice


async def test_delivery_ticks_follow_the_providers_statuses(
    open_tab: Any, shop: Shop, post_webhook: Any, fake_plugin: Any
) -> None:
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await post_webhook(shop.channel_id, [inbound("Recebeu?")])
    await page.locator(".conversations .conv", has_text="Ana Souza").click()
    await page.get_by_role("button", name="Accept").click()
    await page.get_by_label("Reply").fill("Sim!")
    await page.keyboard.press("Enter")
    await fake_plugin.provider.wait_sent(1)
    reply = page.locator(".msg.out", has_text="Sim!")
    await expect(reply).to_have_attribute("data-status", "sent")
    provider_id = next(iter(fake_plugin.provider.accepted.values())).provider_message_id
    for status in (DeliveryStatus.DELIVERED, DeliveryStatus.READ):
        update = StatusUpdate(
            provider_message_id=provider_id, status=status, timestamp=dt.datetime.now(dt.UTC)
        )
        await post_webhook(shop.channel_id, statuses=[update])
        await expect(reply).to_have_attribute("data-status", status.value)
    await expect(reply.locator(".tick")).to_have_attribute("aria-label", "read")
