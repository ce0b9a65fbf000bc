"""Browser tests: the real app on a real TCP port (Postgres, the fake channel plugin),
driven by Playwright with the system's Chromium — never a downloaded browser.

`GUICHE_CHROMIUM` names the browser binary; else `chromium` / `chromium-browser` on PATH
(`make test` installs Debian's `chromium` when missing). Without one the browser tests
skip, saying why. Screenshots land in `tests/console/screenshots/` (or
`GUICHE_SCREENSHOT_DIR`), one per main page.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from guiche.channels import InboundMessage, MessageType, Sender, StatusUpdate
from guiche.foundation.crypto import CredentialCipher
from guiche.models import Channel, Department, Tabulation, TenantPlugin
from guiche.testing import FAKE_SIGNATURE_HEADER, FakeChannelPlugin, fake_webhook_body, sign_fake

SCREENSHOTS = Path(os.environ.get("GUICHE_SCREENSHOT_DIR") or Path(__file__).parent / "screenshots")


def chromium_path() -> str | None:
    configured = os.environ.get("GUICHE_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium here: apt-get install chromium, or set GUICHE_CHROMIUM")
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        await launched.close()


@pytest.fixture
def fake_plugin() -> FakeChannelPlugin:
    return FakeChannelPlugin()


@pytest.fixture
def extra_plugins() -> tuple[tuple[str, Any], ...]:
    """More in-process plugins for the server (a test module overrides this)."""
    return ()


@pytest.fixture
async def server(
    aiohttp_server: Any,
    make_settings: Callable[..., Any],
    fake_plugin: FakeChannelPlugin,
    extra_plugins: tuple[tuple[str, Any], ...],
) -> Any:
    """The whole app on 127.0.0.1:<port>, as `guiche web` serves it."""
    from guiche.app import create_app

    plugins = ((fake_plugin.name, fake_plugin), *extra_plugins)
    app = create_app(make_settings(), extra_plugins=plugins)
    return await aiohttp_server(app)


@pytest.fixture
async def client(aiohttp_client: Any, server: Any) -> Any:
    """A client of the server the browser uses (the plain `client` would be a second app)."""
    return await aiohttp_client(server)


@dataclass
class Shop:
    """A company set up for the console: owner, an agent, a department, a fake channel,
    two tabulations."""

    company: Any
    agent: Any
    department_id: uuid.UUID
    channel_id: uuid.UUID
    tabulations: list[str] = field(default_factory=list)


@pytest.fixture
async def shop(make_company: Callable[..., Any], settings: Any) -> Shop:
    company = await make_company("Loja Console")
    agent = await company.add("agent")
    dept = Department(tenant=company.tenant_id, name="Vendas")
    await dept.save()
    for member in (agent, company.owner):
        await Department.raw(
            'INSERT INTO department_members (tenant, department, "user") VALUES ({}, {}, {})',
            company.tenant_id,
            dept.id,
            member.user_id,
        )
    await TenantPlugin.raw(
        "INSERT INTO tenant_plugins (tenant, plugin, enabled) VALUES ({}, 'fakechannel', true)",
        company.tenant_id,
    )
    cipher = CredentialCipher(settings.encryption_keys)
    channel = Channel(
        tenant=company.tenant_id,
        type="fake",
        name="WhatsApp Loja",
        credentials_encrypted=cipher.encrypt({"webhook_secret": "fake-secret"}),
        default_department=dept.id,
    )
    await channel.save()
    names = ["Resolvido", "Sem resposta"]
    for name in names:
        await Tabulation(tenant=company.tenant_id, name=name).save()
    return Shop(company, agent, dept.id, channel.id, names)


def inbound(text: str, *, name: str = "Ana Souza", phone: str = "5511987654321") -> InboundMessage:
    import datetime as dt

    return InboundMessage(
        provider_message_id=f"wamid.{uuid.uuid4().hex}",
        sender=Sender(phone=phone, name=name),
        timestamp=dt.datetime.now(dt.UTC),
        type=MessageType.TEXT,
        text=text,
        raw={"text": {"body": text}},
    )


@pytest.fixture
def post_webhook(client: Any) -> Callable[..., Any]:
    async def post(
        channel_id: uuid.UUID,
        messages: Sequence[InboundMessage] = (),
        statuses: Sequence[StatusUpdate] = (),
    ) -> None:
        body = fake_webhook_body(messages, statuses)
        resp = await client.post(
            f"/webhooks/fake/{channel_id}",
            data=body,
            headers={FAKE_SIGNATURE_HEADER: sign_fake(body), "Content-Type": "application/json"},
        )
        assert resp.status == 200, await resp.text()

    return post


@dataclass
class Tab:
    page: Any
    errors: list[str]

    async def shot(self, name: str) -> None:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
async def open_tab(browser: Any, server: Any, client: Any) -> AsyncIterator[Callable[..., Any]]:
    """A fresh browser context on the server; every console error fails the test.

    Depends on `client` so the pages close before the client's teardown stops the server."""
    contexts: list[Any] = []
    tabs: list[Tab] = []

    async def open_(*, width: int = 1280, height: int = 800, locale: str = "en-US") -> Tab:
        context = await browser.new_context(
            viewport={"width": width, "height": height},
            locale=locale,
            base_url=str(server.make_url("/")).rstrip("/"),
        )
        contexts.append(context)
        page = await context.new_page()
        tab = Tab(page, [])
        page.on("console", lambda msg: msg.type == "error" and tab.errors.append(msg.text))
        page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        tabs.append(tab)
        return tab

    yield open_
    for context in contexts:
        await context.close()
    errors = [e for tab in tabs for e in tab.errors]
    assert not errors, f"console errors: {errors}"


async def sign_in(tab: Tab, member: Any) -> None:
    page = tab.page
    await page.goto("/")
    await page.get_by_label("Email").fill(member.email)
    await page.get_by_label("Password").fill(member.password)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("tab", name="Pending").wait_for()
