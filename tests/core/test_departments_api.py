"""Departments over HTTP: CRUD, case-insensitive unique names, soft delete, members."""

from __future__ import annotations

import uuid

from guiche.models import AuditLog, Department, DepartmentMember
from tests.conftest import login


async def _create(client, headers, name: str, **extra) -> dict:
    resp = await client.post("/api/v1/departments", json={"name": name, **extra}, headers=headers)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _names(client, headers, query: str = "") -> list[str]:
    resp = await client.get(f"/api/v1/departments?{query}", headers=headers)
    assert resp.status == 200, await resp.text()
    return [item["name"] for item in (await resp.json())["items"]]


async def test_crud_and_soft_delete(client, company):
    headers = await login(client, company.owner)
    sales = await _create(client, headers, "  Vendas ", description="Novos clientes")
    assert (sales["name"], sales["description"], sales["is_active"]) == (
        "Vendas",
        "Novos clientes",
        True,
    )
    url = f"/api/v1/departments/{sales['id']}"
    assert await (await client.get(url, headers=headers)).json() == sales
    resp = await client.patch(url, json={"name": "Vendas B2B", "description": ""}, headers=headers)
    assert resp.status == 200
    assert (await resp.json())["name"] == "Vendas B2B"
    assert (await client.delete(url, headers=headers)).status == 204
    row = await Department.select(Department.is_active).where(Department.id == sales["id"]).first()
    assert row == {"is_active": False}
    assert await _names(client, headers) == []
    assert await _names(client, headers, "include_inactive=true") == ["Vendas B2B"]
    assert (await (await client.get(url, headers=headers)).json())["is_active"] is False
    resp = await client.patch(url, json={"is_active": True}, headers=headers)
    assert (await resp.json())["is_active"] is True
    actions = (
        await AuditLog.select(AuditLog.action)
        .where(AuditLog.target_id == sales["id"])
        .order_by(AuditLog.id)
    )
    assert [a["action"] for a in actions] == [
        "department.create",
        "department.update",
        "department.delete",
        "department.update",
    ]


async def test_names_unique_case_insensitively(client, company):
    headers = await login(client, company.owner)
    sales = await _create(client, headers, "Vendas")
    resp = await client.post("/api/v1/departments", json={"name": "VENDAS"}, headers=headers)
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "duplicate_name"
    assert error["details"] == {"field": "name", "existing_id": sales["id"]}
    support = await _create(client, headers, "Suporte")
    resp = await client.patch(
        f"/api/v1/departments/{support['id']}", json={"name": "vendas"}, headers=headers
    )
    assert resp.status == 409


async def test_same_name_in_another_company(client, company, make_company):
    other = await make_company()
    await _create(client, await login(client, company.owner), "Financeiro")
    await _create(client, await login(client, other.owner), "financeiro")


async def test_validation_and_permissions(client, company):
    headers = await login(client, company.owner)
    resp = await client.post(
        "/api/v1/departments", json={"name": "   ", "description": 5}, headers=headers
    )
    assert resp.status == 422
    fields = {d["field"] for d in (await resp.json())["error"]["details"]}
    assert fields == {"name", "description"}
    resp = await client.post(
        "/api/v1/departments",
        data="{",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert resp.status == 400
    viewer = await login(client, await company.add("viewer"))
    await _create(client, headers, "Compras")
    assert await _names(client, viewer) == ["Compras"]
    resp = await client.post("/api/v1/departments", json={"name": "X"}, headers=viewer)
    assert resp.status == 403


async def test_pagination_and_search(client, company):
    headers = await login(client, company.owner)
    for name in ("Alpha", "Beta", "Gamma", "Delta", "Alphabet"):
        await _create(client, headers, name)
    first = await (await client.get("/api/v1/departments?limit=3", headers=headers)).json()
    assert [d["name"] for d in first["items"]] == ["Alphabet", "Delta", "Gamma"]
    second = await (
        await client.get(
            f"/api/v1/departments?limit=3&cursor={first['next_cursor']}", headers=headers
        )
    ).json()
    assert [d["name"] for d in second["items"]] == ["Beta", "Alpha"]
    assert second["next_cursor"] is None
    assert set(await _names(client, headers, "q=alpha")) == {"Alpha", "Alphabet"}


async def test_members(client, company, make_company):
    headers = await login(client, company.owner)
    sales = await _create(client, headers, "Vendas")
    agent = await company.add("agent")
    base = f"/api/v1/departments/{sales['id']}/members"
    resp = await client.put(f"{base}/{agent.user_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    member = await resp.json()
    assert member["user_id"] == str(agent.user_id)
    assert (member["role"], member["email"], member["is_active"]) == ("agent", agent.email, True)
    # idempotent
    assert (await client.put(f"{base}/{agent.user_id}", headers=headers)).status == 200
    assert await DepartmentMember.count().where(DepartmentMember.department == sales["id"]) == 1
    supervisor = await company.add("supervisor")
    await client.put(f"{base}/{supervisor.user_id}", headers=headers)
    listed = await (await client.get(f"{base}?limit=1", headers=headers)).json()
    assert [m["user_id"] for m in listed["items"]] == [str(supervisor.user_id)]
    rest = await (
        await client.get(f"{base}?limit=1&cursor={listed['next_cursor']}", headers=headers)
    ).json()
    assert [m["user_id"] for m in rest["items"]] == [str(agent.user_id)]

    outsider = (await make_company()).owner
    assert (await client.put(f"{base}/{outsider.user_id}", headers=headers)).status == 404
    assert (await client.put(f"{base}/{uuid.uuid4()}", headers=headers)).status == 404
    assert (await client.put(f"{base}/nope", headers=headers)).status == 404

    assert (await client.delete(f"{base}/{agent.user_id}", headers=headers)).status == 204
    assert (await client.delete(f"{base}/{agent.user_id}", headers=headers)).status == 204
    listed = await (await client.get(base, headers=headers)).json()
    assert [m["user_id"] for m in listed["items"]] == [str(supervisor.user_id)]
    agent_headers = await login(client, agent)
    assert (await client.put(f"{base}/{agent.user_id}", headers=agent_headers)).status == 403
    assert (await client.get(base, headers=agent_headers)).status == 200
    missing = f"/api/v1/departments/{uuid.uuid4()}/members"
    assert (await client.get(missing, headers=headers)).status == 404
    assert (await client.put(f"{missing}/{agent.user_id}", headers=headers)).status == 404
