"""The company's people over HTTP: invitations, roles, deactivation, presence."""

from __future__ import annotations

import datetime as dt
import uuid

from guiche.models import AuditLog, Membership, RefreshToken
from tests.conftest import Member, login


def _email() -> str:
    return f"person-{uuid.uuid4().hex[:10]}@example.test"


async def _error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    if code:
        assert error["code"] == code, error
    return error


def _no_secrets(data) -> None:
    assert "password" not in str(data)


async def _find(client, headers, email: str) -> dict | None:
    resp = await client.get("/api/v1/users", params={"q": email}, headers=headers)
    assert resp.status == 200, await resp.text()
    items = (await resp.json())["items"]
    return items[0] if items else None


async def test_create_new_user_who_can_then_log_in(client, company):
    headers = await login(client, company.owner)
    email = _email()
    resp = await client.post(
        "/api/v1/users",
        json={
            "email": email.upper(),
            "name": "Nova Agente",
            "password": "s3cret-pass",
            "role": "agent",
            "max_concurrent_chats": 3,
        },
        headers=headers,
    )
    assert resp.status == 202, await resp.text()
    sent = await resp.json()
    _no_secrets(sent)
    assert (sent["email"], sent["name"], sent["role"], sent["max_concurrent_chats"]) == (
        email,
        "Nova Agente",
        "agent",
        3,
    )
    user = await _find(client, headers, email)  # a new email: account and seat at once
    assert user is not None
    assert (user["name"], user["role"], user["max_concurrent_chats"]) == ("Nova Agente", "agent", 3)
    assert user["is_active"] is True and user["status"] == "offline"
    member = Member(uuid.UUID(user["id"]), email, "s3cret-pass", "agent", company.tenant_id)
    assert "Authorization" in await login(client, member)
    resp = await client.get(f"/api/v1/users/{user['id']}", headers=headers)
    assert await resp.json() == user
    audit = await AuditLog.select(AuditLog.action).where(
        (AuditLog.tenant == company.tenant_id) & (AuditLog.target_id == sent["id"])
    )
    assert audit == [{"action": "user.invite"}]


async def test_adding_someone_twice_conflicts(client, make_company, company):
    headers = await login(client, company.owner)
    body = {"email": _email(), "password": "s3cret-pass", "role": "agent"}
    assert (await client.post("/api/v1/users", json=body, headers=headers)).status == 202
    resp = await client.post("/api/v1/users", json=body, headers=headers)
    await _error(resp, 409, "already_member")
    invited = {"email": (await make_company()).owner.email, "role": "agent"}
    assert (await client.post("/api/v1/users", json=invited, headers=headers)).status == 202
    resp = await client.post("/api/v1/users", json=invited, headers=headers)
    await _error(resp, 409, "already_invited")


async def test_create_validation(client, company):
    headers = await login(client, company.owner)
    resp = await client.post(
        "/api/v1/users",
        json={
            "email": "not-an-email",
            "role": "king",
            "password": "short",
            "max_concurrent_chats": -1,
        },
        headers=headers,
    )
    error = await _error(resp, 422, "validation_error")
    assert {d["field"] for d in error["details"]} == {
        "email",
        "role",
        "password",
        "max_concurrent_chats",
    }
    # no password and no account: invited, waiting for the person to have an account
    email = _email()
    resp = await client.post(
        "/api/v1/users", json={"email": email, "role": "agent"}, headers=headers
    )
    assert resp.status == 202, await resp.text()
    assert await _find(client, headers, email) is None


async def test_nobody_grants_above_their_own_role(client, company):
    admin = await company.add("admin")
    headers = await login(client, admin)
    body = {"email": _email(), "password": "long-enough", "role": "owner"}
    await _error(
        await client.post("/api/v1/users", json=body, headers=headers), 403, "role_above_own"
    )
    body["role"] = "admin"
    assert (await client.post("/api/v1/users", json=body, headers=headers)).status == 202
    agent = await company.add("agent")
    url = f"/api/v1/users/{agent.user_id}"
    resp = await client.patch(url, json={"role": "owner"}, headers=headers)
    await _error(resp, 403, "role_above_own")
    # an admin cannot touch an owner at all
    resp = await client.patch(
        f"/api/v1/users/{company.owner.user_id}", json={"max_concurrent_chats": 1}, headers=headers
    )
    await _error(resp, 403, "role_above_own")
    resp = await client.post(f"/api/v1/users/{company.owner.user_id}/deactivate", headers=headers)
    await _error(resp, 403)
    supervisor = await login(client, await company.add("supervisor"))
    resp = await client.post("/api/v1/users", json=body, headers=supervisor)
    await _error(resp, 403, "permission_denied")


async def test_patch_name_role_and_cap(client, company):
    headers = await login(client, company.owner)
    agent = await company.add("agent")
    url = f"/api/v1/users/{agent.user_id}"
    resp = await client.patch(
        url,
        json={"name": "Renamed", "role": "supervisor", "max_concurrent_chats": 9},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert (data["name"], data["role"], data["max_concurrent_chats"]) == (
        "Renamed",
        "supervisor",
        9,
    )
    resp = await client.patch(
        url, json={"role": "boss", "max_concurrent_chats": 101}, headers=headers
    )
    error = await _error(resp, 422)
    assert {d["field"] for d in error["details"]} == {"role", "max_concurrent_chats"}
    assert (
        await client.patch(f"/api/v1/users/{uuid.uuid4()}", json={}, headers=headers)
    ).status == 404


async def test_last_owner_cannot_be_demoted_or_deactivated(client, company):
    headers = await login(client, company.owner)
    url = f"/api/v1/users/{company.owner.user_id}"
    await _error(
        await client.patch(url, json={"role": "admin"}, headers=headers), 409, "last_owner"
    )
    await _error(await client.post(f"{url}/deactivate", headers=headers), 409, "last_owner")
    second = await company.add("owner")
    resp = await client.patch(url, json={"role": "admin"}, headers=headers)
    assert resp.status == 200
    assert (await resp.json())["role"] == "admin"
    second_headers = await login(client, second)
    resp = await client.post(f"/api/v1/users/{second.user_id}/deactivate", headers=second_headers)
    await _error(resp, 409, "last_owner")
    seat = await Membership.select(Membership.role, Membership.is_active).where(
        (Membership.tenant == company.tenant_id) & (Membership.user == second.user_id)
    )
    assert seat == [{"role": "owner", "is_active": True}]


async def test_deactivate_revokes_sessions_and_activate_restores(client, company):
    headers = await login(client, company.owner)
    agent = await company.add("agent")
    await login(client, agent)
    await login(client, agent)
    tokens = RefreshToken.select(RefreshToken.revoked_at).where(
        (RefreshToken.user == agent.user_id) & (RefreshToken.tenant == company.tenant_id)
    )
    assert len(await tokens) == 2
    resp = await client.put(
        f"/api/v1/users/{agent.user_id}/status", json={"status": "online"}, headers=headers
    )
    assert resp.status == 200
    resp = await client.post(f"/api/v1/users/{agent.user_id}/deactivate", headers=headers)
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["is_active"] is False and data["status"] == "offline"
    assert all(row["revoked_at"] is not None for row in await tokens)
    resp = await client.post(
        "/api/v1/auth/login", json={"email": agent.email, "password": agent.password}
    )
    assert resp.status != 200
    inactive = await client.get("/api/v1/users?is_active=false", headers=headers)
    assert [u["id"] for u in (await inactive.json())["items"]] == [str(agent.user_id)]
    resp = await client.post(f"/api/v1/users/{agent.user_id}/activate", headers=headers)
    assert (await resp.json())["is_active"] is True
    assert "Authorization" in await login(client, agent)
    actions = (
        await AuditLog.select(AuditLog.action)
        .where((AuditLog.tenant == company.tenant_id) & (AuditLog.target_id == agent.user_id))
        .order_by(AuditLog.id)
    )
    assert [a["action"] for a in actions] == ["user.status", "user.deactivate", "user.activate"]


async def test_presence_own_or_with_users_manage(client, company):
    agent = await company.add("agent")
    other = await company.add("agent")
    agent_headers = await login(client, agent)
    before = (
        await Membership.select(Membership.status_changed_at)
        .where((Membership.tenant == company.tenant_id) & (Membership.user == agent.user_id))
        .first()
    )
    resp = await client.put(
        f"/api/v1/users/{agent.user_id}/status", json={"status": "away"}, headers=agent_headers
    )
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["status"] == "away"
    changed_at = dt.datetime.fromisoformat(data["status_changed_at"])
    assert changed_at > before["status_changed_at"]
    resp = await client.put(
        f"/api/v1/users/{other.user_id}/status", json={"status": "online"}, headers=agent_headers
    )
    await _error(resp, 403, "permission_denied")
    resp = await client.put(
        f"/api/v1/users/{agent.user_id}/status", json={"status": "busy"}, headers=agent_headers
    )
    assert (await _error(resp, 422))["details"][0]["field"] == "status"
    admin_headers = await login(client, await company.add("admin"))
    resp = await client.put(
        f"/api/v1/users/{other.user_id}/status", json={"status": "online"}, headers=admin_headers
    )
    assert (await resp.json())["status"] == "online"
    # an agent cannot list people
    assert (await client.get("/api/v1/users", headers=agent_headers)).status == 403


async def test_list_filters_and_pagination(client, company):
    headers = await login(client, company.owner)
    people = [await company.add("agent") for _ in range(3)]
    supervisor = await company.add("supervisor")
    await client.put(
        f"/api/v1/users/{people[0].user_id}/status", json={"status": "online"}, headers=headers
    )
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/v1/users?limit=2" + (f"&cursor={cursor}" if cursor else "")
        data = await (await client.get(url, headers=headers)).json()
        _no_secrets(data)
        seen += [item["id"] for item in data["items"]]
        cursor = data["next_cursor"]
        if not cursor:
            break
    expected = [str(m.user_id) for m in [company.owner, *people, supervisor]]
    assert seen == list(reversed(expected))

    async def ids(query: str) -> set[str]:
        data = await (await client.get(f"/api/v1/users?{query}", headers=headers)).json()
        return {item["id"] for item in data["items"]}

    assert await ids("role=agent") == {str(p.user_id) for p in people}
    assert await ids("status=online") == {str(people[0].user_id)}
    assert await ids(f"q={people[1].email[:16]}") == {str(people[1].user_id)}
    assert await ids("q=Supervisor") == {str(supervisor.user_id)}
    resp = await client.get("/api/v1/users?role=king&status=busy", headers=headers)
    error = await _error(resp, 422)
    assert {d["field"] for d in error["details"]} == {"role", "status"}
