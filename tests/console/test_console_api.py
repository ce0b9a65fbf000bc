"""The console's server side without a browser: `/` for browsers and API clients, its
static files (and nothing outside them), plugins' pages and their gating, and the
contact search the inbox uses."""

from __future__ import annotations

from typing import Any

import pytest

from guiche.plugin_host.manager import PluginError
from tests.conftest import login
from tests.console.conftest import Shop, inbound
from tests.console.plugins_for_tests import BoardPlugin, BrokenPagePlugin


@pytest.fixture
def extra_plugins() -> tuple[tuple[str, Any], ...]:
    return (("boardplug", BoardPlugin()),)


async def test_root_serves_the_console_to_browsers_and_json_to_api_clients(client: Any) -> None:
    page = await client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert '<script type="module" src="/console/app.js">' in html
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "https:" not in csp
    assert f"ws://{page.url.host}:{page.url.port}" in csp  # the socket, same host only
    api = await client.get("/", headers={"Accept": "application/json"})
    assert api.status == 200 and (await api.json())["api"] == "/api/v1"


async def test_console_files_are_served_offline_with_their_types(client: Any) -> None:
    for path, kind in (
        ("/console/app.js", "text/javascript"),
        ("/console/vendor/htm-preact.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.content_type == kind
        body = await resp.text()
        assert "https://" not in body.replace("https://github.com", "")  # nothing from a CDN
    index = await (await client.get("/console/index.html")).text()
    assert "http://" not in index and "https://" not in index


@pytest.mark.parametrize(
    "path",
    [
        "/console/../app.py",
        "/console/%2e%2e/routes.py",
        "/console/..%2Froutes.py",
        "/console/.hidden",
        "/console/nope.js",
        "/console/plugins/boardplug/../../routes.py",
        "/console/plugins/boardplug/nope.js",
        "/console/plugins/unknown/page.js",
    ],
)
async def test_nothing_outside_the_static_folders_is_served(client: Any, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_plugin_pages_are_listed_for_companies_that_enabled_the_plugin(
    client: Any, shop: Shop, make_company: Any
) -> None:
    owner = await login(client, shop.company.owner)
    agent = await login(client, shop.agent)
    resp = await client.get("/api/v1/console/pages", headers=owner)
    assert resp.status == 200 and (await resp.json())["items"] == []  # not enabled yet

    enable = await client.put("/api/v1/plugins/boardplug", json={"enabled": True}, headers=owner)
    assert enable.status == 200, await enable.text()
    items = (await (await client.get("/api/v1/console/pages", headers=owner)).json())["items"]
    assert [(i["plugin"], i["slug"]) for i in items] == [
        ("boardplug", "board"),
        ("boardplug", "secret"),
    ]
    assert items[0]["titles"] == {"pt-BR": "Quadro"}
    assert items[0]["module_url"] == "/console/plugins/boardplug/page.js"
    # the page's permission hides it from roles without it
    items = (await (await client.get("/api/v1/console/pages", headers=agent)).json())["items"]
    assert [i["slug"] for i in items] == ["board"]
    # another company has not enabled it
    other = await make_company()
    other_headers = await login(client, other.owner)
    resp = await client.get("/api/v1/console/pages", headers=other_headers)
    assert (await resp.json())["items"] == []

    module = await client.get(items[0]["module_url"])
    assert module.status == 200 and module.content_type == "text/javascript"
    assert "export default function mount" in await module.text()
    assert (await client.get("/console/plugins/boardplug/board.css")).content_type == "text/css"


async def test_the_pages_list_needs_a_caller(client: Any) -> None:
    resp = await client.get("/api/v1/console/pages")
    assert resp.status == 401


async def test_a_page_whose_module_is_missing_fails_start_up_naming_the_plugin(
    make_settings: Any,
) -> None:
    from guiche.app import create_app

    with pytest.raises(PluginError, match=r"brokenpage.*missing\.js"):
        create_app(make_settings(), extra_plugins=(("brokenpage", BrokenPagePlugin()),))


async def test_conversations_are_searched_by_the_contacts_name_or_phone(
    client: Any, shop: Shop, post_webhook: Any, make_company: Any
) -> None:
    await post_webhook(shop.channel_id, [inbound("oi", name="Ana Souza", phone="5511987654321")])
    await post_webhook(shop.channel_id, [inbound("olá", name="Bruno 100%", phone="5521999990000")])
    headers = await login(client, shop.company.owner)

    async def names(q: str, h: dict[str, str] = headers) -> list[str]:
        resp = await client.get("/api/v1/conversations", params={"q": q}, headers=h)
        assert resp.status == 200, await resp.text()
        return sorted(c["contact"]["name"] for c in (await resp.json())["items"])

    assert await names("souza") == ["Ana Souza"]
    assert await names("SOUZA") == ["Ana Souza"]
    assert await names("2199999") == ["Bruno 100%"]  # part of the phone
    assert await names("100%") == ["Bruno 100%"]
    assert await names("%") == ["Bruno 100%"]  # literal, not a wildcard
    assert await names("_") == []
    assert await names("nobody") == []
    # another company searching the same name sees none of these
    other = await make_company()
    assert await names("Souza", await login(client, other.owner)) == []
    resp = await client.get("/api/v1/conversations", params={"q": ""}, headers=headers)
    assert resp.status == 422



async def test_a_person_reads_their_own_presence_without_users_read(
    client: Any, shop: Shop
) -> None:
    agent = await login(client, shop.agent)
    resp = await client.get("/api/v1/presence", headers=agent)
    assert resp.status == 200
    assert (await resp.json())["status"] == "offline"
    put = await client.put(
        f"/api/v1/users/{shop.agent.user_id}/status", json={"status": "away"}, headers=agent
    )
    assert put.status == 200
    body = await (await client.get("/api/v1/presence", headers=agent)).json()
    assert (body["user_id"], body["status"]) == (str(shop.agent.user_id), "away")
    assert (await client.get("/api/v1/presence")).status == 401


async def test_agents_list_who_can_take_a_conversation_for_transfers(
    client: Any, shop: Shop, make_company: Any
) -> None:
    viewer = await shop.company.add("viewer")
    other = await make_company()
    await other.add("agent")
    agent = await login(client, shop.agent)
    resp = await client.get("/api/v1/agents", headers=agent)  # no users.read needed
    assert resp.status == 200
    items = (await resp.json())["items"]
    assert {i["id"] for i in items} == {str(shop.agent.user_id), str(shop.company.owner.user_id)}
    assert set(items[0]) == {"id", "name", "status"}  # no emails, roles or caps
    resp = await client.get("/api/v1/agents", headers=await login(client, viewer))
    assert resp.status == 403
