"""Tenancy is sacred: company B, holding company A's ids, can neither see nor change them.

Every tenant-owned resource is tried with B's owner token on every route that takes an
id: the answer is 404 (exactly as for an id that never existed), and A's rows are
byte-for-byte unchanged afterwards. B's lists and searches never include A's rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from guiche.models import (
    Channel,
    Contact,
    Department,
    DepartmentMember,
    Membership,
    Note,
    RefreshToken,
    Tabulation,
    Template,
    User,
)
from tests.conftest import Company, login
from tests.core.test_channels_api import CREDENTIALS, PLUGINS, enable_fakechan

TENANT_TABLES = (
    Membership,
    Department,
    DepartmentMember,
    Contact,
    Tabulation,
    Template,
    Note,
    Channel,
    RefreshToken,
)


@dataclass
class World:
    client: Any
    a: Company
    b: Company
    a_headers: dict[str, str]
    b_headers: dict[str, str]
    ids: dict[str, str]


async def snapshot(tenant_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    """Every row company A owns (plus its people's user rows), in a stable order."""
    state: dict[str, list[dict[str, Any]]] = {}
    for table in TENANT_TABLES:
        rows = await table.select().where(table.tenant == tenant_id).output(load_json=True)
        state[table._meta.tablename] = sorted(rows, key=lambda row: str(row["id"]))
    members = [row["user"] for row in state["memberships"]]
    users = await User.select().where(User.id.is_in(members))
    state["users"] = sorted(users, key=lambda row: str(row["id"]))
    return state


async def _ok(resp, status: int = 201) -> dict:
    assert resp.status == status, await resp.text()
    return await resp.json()


@pytest.fixture
async def world(make_client, make_company) -> World:
    client = await make_client(extra_plugins=PLUGINS)
    a, b = await make_company("Empresa A"), await make_company("Empresa B")
    for company in (a, b):
        await enable_fakechan(company.tenant_id)
    a_headers, b_headers = await login(client, a.owner), await login(client, b.owner)
    agent = await a.add("agent")
    await login(client, agent)  # leaves a refresh token row for A
    ids: dict[str, str] = {"user": str(agent.user_id)}

    async def post(path: str, body: dict) -> str:
        return (await _ok(await client.post(path, json=body, headers=a_headers)))["id"]

    ids["department"] = await post("/api/v1/departments", {"name": "Vendas"})
    await _ok(
        await client.put(
            f"/api/v1/departments/{ids['department']}/members/{agent.user_id}", headers=a_headers
        ),
        200,
    )
    ids["contact"] = await post(
        "/api/v1/contacts",
        {"name": "Cliente Secreto", "phone": "(31) 98888-7777", "email": "secreto@a.com"},
    )
    ids["tabulation"] = await post("/api/v1/tabulations", {"name": "Resolvido"})
    ids["channel"] = await post(
        "/api/v1/channels",
        {
            "type": "fakechan",
            "name": "WhatsApp A",
            "credentials": CREDENTIALS,
            "default_department_id": ids["department"],
        },
    )
    ids["template"] = await post(
        "/api/v1/templates", {"name": "oi", "body": "Olá", "channel_id": ids["channel"]}
    )
    ids["note"] = await post("/api/v1/notes", {"body": "segredo", "contact_id": ids["contact"]})
    return World(client, a, b, a_headers, b_headers, ids)


async def assert_all_404(world: World, calls: list[tuple[str, str, dict | None]]) -> None:
    """Each call with B's token answers 404 and leaves A's data exactly as it was."""
    before = await snapshot(world.a.tenant_id)
    for method, path, body in calls:
        resp = await world.client.request(method, path, json=body, headers=world.b_headers)
        assert resp.status == 404, f"{method} {path}: {resp.status} {await resp.text()}"
        assert (await resp.json())["error"]["code"] == "not_found"
    assert await snapshot(world.a.tenant_id) == before


async def list_ids(world: World, path: str) -> set[str]:
    """Every id B sees on a list, following the cursor to the end."""
    seen: set[str] = set()
    cursor = None
    while True:
        url = path + ("&" if "?" in path else "?") + "limit=200"
        if cursor:
            url += f"&cursor={cursor}"
        data = await _ok(await world.client.get(url, headers=world.b_headers), 200)
        seen |= {item.get("id") or item.get("user_id") for item in data["items"]}
        cursor = data["next_cursor"]
        if not cursor:
            return seen


async def test_users(world: World):
    user = f"/api/v1/users/{world.ids['user']}"
    owner = f"/api/v1/users/{world.a.owner.user_id}"
    await assert_all_404(
        world,
        [
            ("GET", user, None),
            ("PATCH", user, {"name": "Hacked", "role": "viewer", "max_concurrent_chats": 0}),
            ("POST", f"{user}/deactivate", None),
            ("POST", f"{user}/activate", None),
            ("PUT", f"{user}/status", {"status": "online"}),
            ("PATCH", owner, {"role": "viewer"}),
            ("POST", f"{owner}/deactivate", None),
        ],
    )
    listed = await list_ids(world, "/api/v1/users")
    assert world.ids["user"] not in listed and str(world.a.owner.user_id) not in listed
    assert listed == {str(world.b.owner.user_id)}
    assert await list_ids(world, f"/api/v1/users?q={world.a.owner.email}") == set()


async def test_departments_and_members(world: World):
    b_dep = (
        await _ok(
            await world.client.post(
                "/api/v1/departments", json={"name": "Vendas"}, headers=world.b_headers
            )
        )
    )["id"]
    dep = f"/api/v1/departments/{world.ids['department']}"
    await assert_all_404(
        world,
        [
            ("GET", dep, None),
            ("PATCH", dep, {"name": "Hacked", "is_active": False}),
            ("DELETE", dep, None),
            ("GET", f"{dep}/members", None),
            ("PUT", f"{dep}/members/{world.b.owner.user_id}", None),
            ("DELETE", f"{dep}/members/{world.ids['user']}", None),
            # A's person cannot be put into B's department either
            ("PUT", f"/api/v1/departments/{b_dep}/members/{world.ids['user']}", None),
        ],
    )
    assert await list_ids(world, "/api/v1/departments?include_inactive=true") == {b_dep}
    assert await list_ids(world, f"/api/v1/departments/{b_dep}/members") == set()


async def test_contacts_and_search(world: World):
    contact = f"/api/v1/contacts/{world.ids['contact']}"
    await assert_all_404(
        world,
        [
            ("GET", contact, None),
            ("PATCH", contact, {"name": "Hacked", "opted_out": True}),
            ("DELETE", contact, None),
        ],
    )
    for q in ("Secreto", "98888", "%2B5531988887777", "secreto@a.com"):
        assert await list_ids(world, f"/api/v1/contacts?q={q}") == set(), q
    assert await list_ids(world, "/api/v1/contacts") == set()
    # the same phone is a different contact in B, created or imported
    before = await snapshot(world.a.tenant_id)
    own = await _ok(
        await world.client.post(
            "/api/v1/contacts",
            json={"name": "B's", "phone": "31988887777"},
            headers=world.b_headers,
        )
    )
    assert own["id"] != world.ids["contact"]
    form = aiohttp.FormData()
    form.add_field("file", b"name,phone\nImported,31988887777\n", filename="c.csv")
    report = await _ok(
        await world.client.post("/api/v1/contacts/import", data=form, headers=world.b_headers), 200
    )
    assert (report["created"], report["updated"]) == (0, 1)
    assert await snapshot(world.a.tenant_id) == before
    assert await list_ids(world, "/api/v1/contacts") == {own["id"]}


async def test_tabulations(world: World):
    tab = f"/api/v1/tabulations/{world.ids['tabulation']}"
    await assert_all_404(
        world,
        [("GET", tab, None), ("PATCH", tab, {"name": "Hacked"}), ("DELETE", tab, None)],
    )
    assert await list_ids(world, "/api/v1/tabulations?include_inactive=true") == set()


async def test_templates(world: World):
    template = f"/api/v1/templates/{world.ids['template']}"
    await assert_all_404(
        world,
        [
            ("GET", template, None),
            ("PATCH", template, {"body": "Hacked", "channel_id": None}),
            ("DELETE", template, None),
        ],
    )
    assert await list_ids(world, "/api/v1/templates") == set()
    assert await list_ids(world, f"/api/v1/templates?channel_id={world.ids['channel']}") == set()
    # A's channel cannot carry B's template
    before = await snapshot(world.a.tenant_id)
    resp = await world.client.post(
        "/api/v1/templates",
        json={"name": "x", "channel_id": world.ids["channel"]},
        headers=world.b_headers,
    )
    assert resp.status == 422
    assert await snapshot(world.a.tenant_id) == before


async def test_notes(world: World):
    await assert_all_404(
        world,
        [
            ("DELETE", f"/api/v1/notes/{world.ids['note']}", None),
            ("GET", f"/api/v1/notes?contact_id={world.ids['contact']}", None),
            ("POST", "/api/v1/notes", {"body": "intrusion", "contact_id": world.ids["contact"]}),
        ],
    )


async def test_channels(world: World):
    channel = f"/api/v1/channels/{world.ids['channel']}"
    await assert_all_404(
        world,
        [
            ("GET", channel, None),
            ("PATCH", channel, {"name": "Hacked", "credentials": {"account_id": "mine"}}),
            ("DELETE", channel, None),
        ],
    )
    assert await list_ids(world, "/api/v1/channels?include_inactive=true") == set()
    # B cannot route its channel into A's department
    before = await snapshot(world.a.tenant_id)
    resp = await world.client.post(
        "/api/v1/channels",
        json={
            "type": "fakechan",
            "name": "B",
            "credentials": CREDENTIALS,
            "default_department_id": world.ids["department"],
        },
        headers=world.b_headers,
    )
    assert resp.status == 422
    assert await snapshot(world.a.tenant_id) == before


async def test_unknown_ids_answer_the_same_404(world: World):
    """A's id and an id that never existed are indistinguishable to B."""
    for kind in ("contacts", "departments", "tabulations", "templates", "channels", "users"):
        foreign = await world.client.get(
            f"/api/v1/{kind}/{world.ids[kind.rstrip('s')]}", headers=world.b_headers
        )
        missing = await world.client.get(f"/api/v1/{kind}/{uuid.uuid4()}", headers=world.b_headers)
        assert foreign.status == missing.status == 404
        assert await foreign.json() == await missing.json()
