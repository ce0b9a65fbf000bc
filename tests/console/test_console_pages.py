"""Presence, the supervisor and channel pages, a plugin's page, the pt-BR console, a
phone-sized screen and keyboard use — in the browser, against the real app."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import login
from tests.console.conftest import Shop, inbound, sign_in
from tests.console.plugins_for_tests import BoardPlugin


@pytest.fixture
def extra_plugins() -> tuple[tuple[str, Any], ...]:
    return (("boardplug", BoardPlugin()),)


async def test_going_online_takes_the_queued_conversation_and_the_supervisor_sees_it(
    open_tab: Any, shop: Shop, post_webhook: Any, client: Any
) -> None:
    await post_webhook(shop.channel_id, [inbound("Alguém aí?")])  # queued: nobody online
    agent_tab = await open_tab()
    page = agent_tab.page
    await sign_in(agent_tab, shop.agent)
    await expect(page.locator(".conversations .conv", has_text="Ana Souza")).to_be_visible()

    await page.get_by_label("Status").select_option("online")
    await page.get_by_role("tab", name="Active").click()
    await expect(page.locator(".conversations .conv", has_text="Ana Souza")).to_be_visible()
    owner = await login(client, shop.company.owner)
    user = await (await client.get(f"/api/v1/users/{shop.agent.user_id}", headers=owner)).json()
    assert user["status"] == "online"

    boss_tab = await open_tab()
    boss = boss_tab.page
    await sign_in(boss_tab, shop.company.owner)
    await boss.get_by_role("link", name="Supervisor").click()
    row = boss.locator(f"tr[data-user='{shop.agent.user_id}']")
    await expect(row).to_contain_text("Online")
    await expect(row).to_contain_text("1 / 5")  # the conversation it took
    await boss_tab.shot("supervisor")

    await page.get_by_label("Status").select_option("away")  # the agent steps away: live there
    await expect(row).to_contain_text("Away")

    await boss.get_by_role("link", name="Channels").click()
    await expect(boss.locator(f"tr[data-channel='{shop.channel_id}']")).to_contain_text(
        "WhatsApp Loja"
    )
    await boss_tab.shot("channels")


async def test_a_plugin_page_is_in_the_menu_once_the_company_enables_it(
    open_tab: Any, shop: Shop, client: Any
) -> None:
    owner = await login(client, shop.company.owner)
    resp = await client.put("/api/v1/plugins/boardplug", json={"enabled": True}, headers=owner)
    assert resp.status == 200
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await page.get_by_role("link", name="Board").click()
    await expect(page.locator(".board")).to_have_text("Company: Loja Console (en)")
    await tab.shot("plugin-page")


async def test_portuguese_by_the_browser_on_a_phone_sized_screen(
    open_tab: Any, shop: Shop, post_webhook: Any
) -> None:
    tab = await open_tab(width=390, height=844, locale="pt-BR")
    page = tab.page
    await page.goto("/")
    await expect(page.get_by_role("button", name="Entrar")).to_be_visible()
    await tab.shot("login-phone-pt-BR")
    await page.get_by_label("E-mail").fill(shop.company.owner.email)
    await page.get_by_label("Senha").fill(shop.company.owner.password)
    await page.get_by_role("button", name="Entrar").click()
    await expect(page.get_by_role("tab", name="Aguardando")).to_be_visible()
    await post_webhook(shop.channel_id, [inbound("Bom dia")])
    await page.locator(".conversations .conv", has_text="Ana Souza").click()
    await expect(page.locator(".msg.in", has_text="Bom dia")).to_be_visible()
    await expect(page.locator(".conversations")).to_be_hidden()  # one pane at a time
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    await tab.shot("phone-conversation")
    await page.get_by_role("link", name="Voltar").click()
    await expect(page.locator(".conversations")).to_be_visible()

    await page.get_by_label("Idioma").first.select_option("en")  # the user's choice wins
    await expect(page.get_by_role("tab", name="Pending")).to_be_visible()
    await page.reload()
    await expect(page.get_by_role("tab", name="Pending")).to_be_visible()


async def test_the_inbox_works_from_the_keyboard_with_a_visible_focus(
    open_tab: Any, shop: Shop, post_webhook: Any
) -> None:
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await post_webhook(shop.channel_id, [inbound("Pelo teclado")])
    link = page.locator(".conversations .conv", has_text="Ana Souza")
    await expect(link).to_be_visible()
    for _ in range(40):  # tab until the conversation's link has the focus
        await page.keyboard.press("Tab")
        if await link.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("the conversation cannot be reached with Tab")
    outline = await link.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline != "none"  # focus is visible
    await page.keyboard.press("Enter")
    await expect(page.locator(".msg.in", has_text="Pelo teclado")).to_be_visible()
    await page.get_by_role("button", name="Close").focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Close conversation")
    await expect(dialog.get_by_label("Tabulation")).to_be_focused()
    for _ in range(6):  # Tab cycles inside the dialog
        await page.keyboard.press("Tab")
        assert await dialog.evaluate("el => el.contains(document.activeElement)")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_role("button", name="Close")).to_be_focused()  # back to the opener
    unlabeled = await page.evaluate(
        """[...document.querySelectorAll('input, select, textarea')]
             .filter(el => !el.labels || el.labels.length === 0).map(el => el.name)"""
    )
    assert unlabeled == []


async def test_a_supervisor_assigns_a_queued_conversation_from_the_queue(
    open_tab: Any, shop: Shop, post_webhook: Any, client: Any
) -> None:
    await post_webhook(shop.channel_id, [inbound("Fila de espera")])
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await page.get_by_role("link", name="Supervisor").click()
    item = page.locator(".queue li", has_text="Ana Souza")
    await expect(item).to_be_visible()
    await item.get_by_label("Assign to…").select_option(str(shop.agent.user_id))
    await item.get_by_role("button", name="Assign").click()
    await expect(page.locator(".queue li")).to_have_count(0)  # out of the queue, live
    row = page.locator(f"tr[data-user='{shop.agent.user_id}']")
    await expect(row).to_contain_text("1 / 5")
    owner = await login(client, shop.company.owner)
    active = await client.get("/api/v1/conversations?category=active", headers=owner)
    [conv] = (await active.json())["items"]
    assert conv["assignee"]["id"] == str(shop.agent.user_id)
