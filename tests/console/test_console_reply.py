"""Replying beyond text: a file from the page reaches the provider as media (and shows
as a preview), and a closed 24-hour window offers the channel's approved templates."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from playwright.async_api import expect

from guiche.models import Template
from guiche.testing import FakeChannelPlugin
from tests.console.conftest import Shop, inbound, sign_in

# 1×1 transparent PNG
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture
def fake_plugin() -> FakeChannelPlugin:
    return FakeChannelPlugin(window_24h=True)  # Meta's rule: templates only after 24 h


async def test_a_file_from_the_page_is_sent_as_media_and_previewed(
    open_tab: Any, shop: Shop, post_webhook: Any, fake_plugin: FakeChannelPlugin
) -> None:
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await post_webhook(shop.channel_id, [inbound("Manda a foto do boleto?")])
    await page.locator(".conversations .conv", has_text="Ana Souza").click()
    await page.get_by_role("button", name="Accept").click()
    await page.get_by_label("Reply").fill("Segue a foto")
    await page.locator("input[type=file]").set_input_files(
        {"name": "boleto.png", "mimeType": "image/png", "buffer": PNG}
    )
    sent = await fake_plugin.provider.wait_sent(1)
    assert sent[0].kind == "media" and sent[0].media is not None
    preview = page.locator(".msg.out img.media")
    await expect(preview).to_be_visible()
    assert (await preview.get_attribute("src") or "").startswith("blob:")
    await expect(page.get_by_label("Reply")).to_have_value("")


async def test_a_closed_window_offers_the_channels_approved_templates(
    open_tab: Any, shop: Shop, post_webhook: Any, fake_plugin: FakeChannelPlugin
) -> None:
    tenant = shop.company.tenant_id
    await Template(tenant=tenant, channel=shop.channel_id, name="retomada", body="Olá!").save()
    await Template(tenant=tenant, channel=shop.channel_id, name="rascunho", status="PENDING").save()
    two_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    old = inbound("Mensagem de anteontem").model_copy(update={"timestamp": two_days_ago})
    tab = await open_tab()
    page = tab.page
    await sign_in(tab, shop.company.owner)
    await post_webhook(shop.channel_id, [old])
    await page.locator(".conversations .conv", has_text="Ana Souza").click()
    await page.get_by_role("button", name="Accept").click()
    await page.get_by_label("Reply").fill("Oi, ainda precisa de ajuda?")
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.get_by_role("alert")).to_contain_text("24-hour window")
    picker = page.get_by_role("group", name="Send a template")
    await expect(picker.get_by_role("button")).to_have_count(1)  # approved ones only
    await picker.get_by_role("button", name="retomada").click()
    sent = await fake_plugin.provider.wait_sent(1)
    assert sent[0].kind == "template" and sent[0].template is not None
    assert sent[0].template.name == "retomada"
    await expect(picker).to_be_hidden()
    # the refused send was a 422 the browser logged; that is this test's point
    tab.errors[:] = [e for e in tab.errors if "status of 422" not in e]
