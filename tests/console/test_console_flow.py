"""The console in a real browser against the real app: log in, receive a webhook
message live, reply (the fake provider gets it), transfer, close with a tabulation,
and survive the server dropping the socket without missing a message."""

from __future__ import annotations

import asyncio
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


async def open_conversation(tab: Any, shop: Shop, post_webhook: Any, text: str) -> None:
    page = tab.page
    await post_webhook(shop.channel_id, [inbound(text)])
    item = page.locator(".conversations .conv", has_text="Ana Souza")
    await item.click()
    await expect(page.locator(".msg.in", has_text=text)).to_be_visible()


async def test_transfer_to_an_agent_with_a_note_then_close_with_a_required_tabulation(
    open_tab: Any, shop: Shop, post_webhook: Any
) -> None:
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await open_conversation(tab, shop, post_webhook, "Quero trocar o produto")

    await page.get_by_role("button", name="Transfer").click()
    dialog = page.get_by_role("dialog", name="Transfer")
    await dialog.get_by_label("Agent").select_option(str(shop.agent.user_id))
    await dialog.get_by_label("Note").fill("Cliente VIP, tratar com carinho")
    await tab.shot("transfer")
    await dialog.get_by_role("button", name="Transfer").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator(".conv-head .meta")).to_contain_text("Agent")  # the assignee

    await page.get_by_role("button", name="Close").click()
    dialog = page.get_by_role("dialog", name="Close conversation")
    submit = dialog.get_by_role("button", name="Close")
    await expect(submit).to_be_disabled()  # the tabulation is required
    await dialog.get_by_label("Tabulation").select_option(label="Resolvido")
    await submit.click()
    await expect(page.locator(".conversation")).to_have_attribute("data-status", "closed")
    await page.get_by_role("tab", name="Closed").click()
    await expect(page.locator(".conversations .conv", has_text="Ana Souza")).to_be_visible()


async def test_a_message_sent_while_the_socket_was_down_arrives_after_the_reconnect(
    open_tab: Any, shop: Shop, post_webhook: Any, server: Any
) -> None:
    from guiche.runtime.services import SERVICES
    from guiche.websocket.hub import HUB

    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await open_conversation(tab, shop, post_webhook, "Primeira mensagem")

    hub = server.app[HUB]
    hub.detach()  # nothing published now reaches any socket: only the resync can bring it
    await hub.close_all()
    await post_webhook(shop.channel_id, [inbound("Enviada com o socket fechado")])
    hub.attach(server.app[SERVICES].bus)
    await expect(page.locator(".msg.in", has_text="Enviada com o socket fechado")).to_be_visible()
    await expect(page.locator(".conn")).to_have_count(0)  # back online

    await post_webhook(shop.channel_id, [inbound("E esta ao vivo de novo")])
    await expect(page.locator(".msg.in", has_text="E esta ao vivo de novo")).to_be_visible()
    await expect(page.locator(".msg.in", has_text="Enviada com o socket fechado")).to_have_count(1)


async def test_an_expired_access_token_is_refreshed_without_losing_the_page(
    open_tab: Any, shop: Shop, post_webhook: Any
) -> None:
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await open_conversation(tab, shop, post_webhook, "Antes do token vencer")
    refreshes: list[str] = []
    page.on("request", lambda r: "/auth/refresh" in r.url and refreshes.append(r.url))
    await page.get_by_label("Reply").fill("rascunho que não pode sumir")
    # the server no longer accepts the token the page holds (same module instance)
    await page.evaluate(
        "import('/console/api.js').then(m => { m.getSession().access_token = 'expired'; })"
    )
    await page.get_by_role("button", name="Add note").focus()
    await page.get_by_label("Add note").fill("Nota depois do refresh")
    await page.get_by_role("button", name="Add note").click()
    await expect(page.locator(".notes li", has_text="Nota depois do refresh")).to_be_visible()
    assert len(refreshes) == 1
    # the browser logs the refused call itself; that 401 is this test's doing
    tab.errors[:] = [e for e in tab.errors if "status of 401" not in e]
    await expect(page.get_by_label("Reply")).to_have_value("rascunho que não pode sumir")


async def test_calls_sent_together_with_an_expired_token_refresh_it_once(
    open_tab: Any, shop: Shop
) -> None:
    """Two calls leave with the same expired token; the first 401 refreshes, and the
    second, answered after that refresh, retries with the new token instead of rotating
    the refresh token again."""
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    refreshes: list[str] = []
    page.on("request", lambda r: "/auth/refresh" in r.url and refreshes.append(r.url))
    held: list[str] = []

    async def hold_the_first(route: Any) -> None:
        if not held:  # the first call reaches the server after the other one refreshed
            held.append(route.request.url)
            await asyncio.sleep(1.0)
        await route.continue_()

    await page.route("**/api/v1/auth/me", hold_the_first)
    emails = await page.evaluate(
        """async () => {
            const m = await import('/console/api.js');
            m.getSession().access_token = 'expired';
            const both = await Promise.all([m.api('GET', '/api/v1/auth/me'),
                                            m.api('GET', '/api/v1/auth/me')]);
            return both.map((me) => me.user.email);
        }"""
    )
    assert emails == [shop.company.owner.email] * 2
    assert len(refreshes) == 1
    tab.errors[:] = [e for e in tab.errors if "status of 401" not in e]  # this test's doing


async def test_company_switch_and_logout(
    open_tab: Any, shop: Shop, make_company: Any, post_webhook: Any
) -> None:
    from guiche.companies.accounts import add_member

    other = await make_company("Outra Loja")
    await add_member(other.tenant_id, shop.company.owner.user_id, "admin")
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await post_webhook(shop.channel_id, [inbound("Só na Loja Console")])
    await expect(page.locator(".conversations .conv")).to_have_count(1)

    await page.get_by_label("Company").select_option(label="Outra Loja")
    await expect(page.get_by_label("Company")).to_have_value(str(other.tenant_id))
    await expect(page.locator(".conversations .conv")).to_have_count(0)  # the other company's inbox

    await page.reload()  # the session survives a reload, in the company switched to
    await expect(page.get_by_label("Company")).to_have_value(str(other.tenant_id))

    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    await page.reload()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    stored = await page.evaluate("localStorage.getItem('guiche.session')")
    assert stored is None


async def test_search_by_contact_and_unread_counts_in_the_inbox(
    open_tab: Any, shop: Shop, post_webhook: Any
) -> None:
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await post_webhook(shop.channel_id, [inbound("Oi"), inbound("Tem alguém?")])
    await post_webhook(
        shop.channel_id, [inbound("Bom dia", name="Bruno Lima", phone="5521999990000")]
    )
    ana = page.locator(".conversations .conv", has_text="Ana Souza")
    await expect(ana.locator(".badge.unread")).to_have_text("2")
    await expect(page.locator(".tab[data-category=pending] .badge")).to_have_text("2")

    await page.get_by_label("Search by contact").fill("bruno")
    await expect(page.locator(".conversations .conv")).to_have_count(1)
    await expect(page.locator(".conversations .conv")).to_contain_text("Bruno Lima")
    await page.get_by_label("Search by contact").fill("99999")  # part of the phone
    await expect(page.locator(".conversations .conv")).to_contain_text("Bruno Lima")
    await page.get_by_label("Search by contact").fill("")
    await expect(page.locator(".conversations .conv")).to_have_count(2)

    await ana.click()  # opening it marks it read
    await expect(ana.locator(".badge.unread")).to_have_count(0)
    await expect(page.locator(".tab[data-category=pending] .badge")).to_have_text("1")


async def test_two_tabs_share_the_session_without_revoking_each_other(
    open_tab: Any, shop: Shop, post_webhook: Any
) -> None:
    """Refresh tokens rotate and a reused one revokes the family: the tabs must agree."""
    tab = await open_tab()
    first = tab.page
    await sign_in(tab, shop.company.owner)
    second = await first.context.new_page()
    second.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    await second.goto("/")
    await second.get_by_role("tab", name="Pending").wait_for()  # signed in from the first

    rotate = "import('/console/api.js').then(m => m.refresh())"
    await first.evaluate(rotate)
    await second.evaluate(rotate)  # must not present the token the first tab rotated
    await first.evaluate(rotate)
    await post_webhook(shop.channel_id, [inbound("Nas duas abas")])
    for page in (first, second):
        await page.reload()
        await expect(page.locator(".conversations .conv", has_text="Ana Souza")).to_be_visible()


async def test_an_agent_transfers_to_a_colleague_without_seeing_the_people_list(
    open_tab: Any, shop: Shop, post_webhook: Any, client: Any
) -> None:
    from tests.conftest import login

    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.agent)
    await open_conversation(tab, shop, post_webhook, "Preciso falar com o dono")
    await page.get_by_role("button", name="Accept").click()
    await page.get_by_role("button", name="Transfer").click()
    dialog = page.get_by_role("dialog", name="Transfer")
    await dialog.get_by_label("Agent").select_option(label="Owner (Offline)")
    await dialog.get_by_role("button", name="Transfer").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator(".conversation")).to_have_count(0)  # back to the inbox
    owner = await login(client, shop.company.owner)
    page_of = await client.get("/api/v1/conversations?category=active", headers=owner)
    [conv] = (await page_of.json())["items"]
    assert conv["assignee"]["id"] == str(shop.company.owner.user_id)


async def test_a_colleague_typing_in_the_same_conversation_is_shown(
    open_tab: Any, shop: Shop, post_webhook: Any
) -> None:
    boss = await open_tab()
    await sign_in(boss, shop.company.owner)
    await open_conversation(boss, shop, post_webhook, "Quem me atende?")
    agent = await open_tab()
    await sign_in(agent, shop.agent)
    await agent.page.locator(".conversations .conv", has_text="Ana Souza").click()
    await expect(agent.page.locator(".msg.in", has_text="Quem me atende?")).to_be_visible()
    await agent.page.wait_for_timeout(300)  # its socket joins the conversation
    await boss.page.get_by_label("Reply").press_sequentially("Já vou")
    await expect(agent.page.get_by_role("status").filter(has_text="typing")).to_be_visible()
    await expect(boss.page.locator(".typing")).to_have_count(0)  # not to oneself
