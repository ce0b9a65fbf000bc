"""The console in a real browser against the real app: log in, receive a webhook
message live, reply (the fake provider gets it), transfer, close with a tabulation,
and survive the server dropping the socket without missing a message."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.console.conftest import Shop, inbound, sign_in


async def test_login_then_a_webhook_message_appears_live_and_the_reply_reaches_the_provider(
    open_tab: Any, shop: Shop, post_webhook: Any, fake_plugin: Any
) -> None:
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await expect(page.locator(".conversations li")).to_have_count(0)
    await tab.shot("inbox-empty")

    await post_webhook(shop.channel_id, [inbound("Oi, meu pedido não chegou")])
    item = page.locator(".conversations .conv", has_text="Ana Souza")
    await expect(item).to_be_visible()  # no reload: it came over the WebSocket
    await expect(item).to_contain_text("Oi, meu pedido não chegou")
    await expect(page.locator(".tab[data-category=pending] .badge")).to_have_text("1")

    await item.click()
    await expect(page.locator(".msg.in")).to_contain_text("Oi, meu pedido não chegou")
    await page.get_by_role("button", name="Accept").click()
    await expect(page.locator(".conversation")).to_have_attribute("data-status", "active")
    await tab.shot("conversation")

    await page.get_by_label("Reply").fill("Olá Ana, vou verificar agora.")
    await page.keyboard.press("Enter")
    sent = await fake_plugin.provider.wait_sent(1)
    assert sent[0].text == "Olá Ana, vou verificar agora."
    await expect(page.locator(".msg.out")).to_contain_text("vou verificar")
    await expect(page.locator(".msg.out")).to_have_attribute("data-status", "sent")

    # a second customer message arrives while the conversation is open
    await post_webhook(shop.channel_id, [inbound("Obrigada!")])
    await expect(page.locator(".msg.in", has_text="Obrigada!")).to_be_visible()
