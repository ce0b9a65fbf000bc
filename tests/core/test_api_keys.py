"""Per-company API keys: shown once, stored hashed, listed, revoked, role-capped and scoped."""

from __future__ import annotations

import hashlib
import re
import uuid

from guiche.models import ApiKey, AuditLog


async def _create(client, headers, **body):
    return await client.post("/api/v1/api-keys", json={"name": "ERP", **body}, headers=headers)


async def _created(client, headers, **body):
    resp = await _create(client, headers, **body)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _error(resp, status: int, code: str) -> dict:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == code, body
    return body["error"]


async def test_create_returns_the_key_once_and_stores_only_its_hash(client, company, auth_headers):
    headers = await auth_headers(company.owner)
    data = await _created(client, headers, name="ERP sync")
    key = data["key"]
    assert re.fullmatch(r"gk_[0-9a-f]{8}_[A-Za-z0-9_-]{40,}", key)
    assert key.startswith(f"gk_{data['prefix']}_")
    assert data["role"] == "admin"
    assert data["scopes"] == []
    assert data["created_by"] == str(company.owner.user_id)
    row = await ApiKey.select().where(ApiKey.id == uuid.UUID(data["id"])).first()
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(row)

    resp = await client.get("/api/v1/api-keys", headers=headers)
    assert resp.status == 200
    listed = await resp.json()
    assert [item["id"] for item in listed["items"]] == [data["id"]]
    assert "key" not in listed["items"][0]
    assert "key_hash" not in listed["items"][0]
    assert listed["next_cursor"] is None


async def test_a_key_authenticates_as_its_company_and_role(client, company, auth_headers):
    admin = await company.add("admin")
    data = await _created(client, await auth_headers(admin), role="supervisor")
    resp = await client.get("/api/v1/auth/me", headers={"x-api-key": data["key"]})
    assert resp.status == 200, await resp.text()
    me = await resp.json()
    assert me["kind"] == "api_key"
    assert me["user"] is None
    assert me["tenant"]["id"] == str(company.tenant_id)
    assert me["role"] == "supervisor"
    assert "api_keys.manage" not in me["permissions"]
    resp = await client.get("/api/v1/api-keys", headers={"x-api-key": data["key"]})
    await _error(resp, 403, "permission_denied")
    row = await ApiKey.select(ApiKey.last_used_at).where(ApiKey.id == data["id"]).first()
    assert row["last_used_at"] is not None


async def test_api_keys_cannot_use_session_routes(client, company, auth_headers):
    data = await _created(client, await auth_headers(company.owner))
    headers = {"x-api-key": data["key"]}
    await _error(await client.get("/api/v1/auth/companies", headers=headers), 403, "user_required")
    resp = await client.post(
        "/api/v1/auth/switch", json={"tenant_id": str(company.tenant_id)}, headers=headers
    )
    await _error(resp, 403, "user_required")


async def test_scopes_narrow_what_a_key_may_do(client, company, auth_headers):
    headers = await auth_headers(company.owner)
    data = await _created(client, headers, role="admin", scopes=["tenant.settings.read"])
    assert data["scopes"] == ["tenant.settings.read"]
    key_headers = {"x-api-key": data["key"]}
    me = await (await client.get("/api/v1/auth/me", headers=key_headers)).json()
    assert me["permissions"] == ["tenant.settings.read"]
    assert (await client.get("/api/v1/tenant", headers=key_headers)).status == 200
    resp = await client.get("/api/v1/api-keys", headers=key_headers)
    await _error(resp, 403, "permission_denied")


async def test_scopes_must_belong_to_the_keys_role(client, company, auth_headers):
    headers = await auth_headers(company.owner)
    resp = await _create(client, headers, role="viewer", scopes=["api_keys.manage"])
    error = await _error(resp, 422, "validation_error")
    assert "api_keys.manage" in error["details"][0]["message"]
    resp = await _create(client, headers, scopes=["no.such.permission"])
    await _error(resp, 422, "validation_error")
    resp = await _create(client, headers, scopes=["platform.tenants.manage"])
    await _error(resp, 422, "validation_error")
    await _error(await _create(client, headers, role="root"), 422, "validation_error")
    await _error(await _create(client, headers, name="  "), 422, "validation_error")


async def test_a_key_never_outranks_its_creator(client, company, auth_headers):
    admin_headers = await auth_headers(await company.add("admin"))
    resp = await _create(client, admin_headers, role="owner")
    error = await _error(resp, 403, "role_exceeds_caller")
    assert error["details"] == {"role": "owner", "caller_role": "admin"}
    owner_key = await _created(client, await auth_headers(company.owner), role="owner")
    assert owner_key["role"] == "owner"
    # a scoped key that may manage keys cannot mint a key broader than itself
    scoped = await _created(
        client, admin_headers, scopes=["api_keys.manage", "tenant.settings.read"]
    )
    resp = await _create(client, {"x-api-key": scoped["key"]}, role="admin")
    await _error(resp, 403, "scope_exceeds_caller")
    narrower = await _created(client, {"x-api-key": scoped["key"]}, scopes=["tenant.settings.read"])
    assert narrower["created_by"] is None


async def test_revoked_keys_stop_working_and_leave_the_list(client, company, auth_headers):
    headers = await auth_headers(company.owner)
    data = await _created(client, headers)
    resp = await client.delete(f"/api/v1/api-keys/{data['id']}", headers=headers)
    assert resp.status == 204
    resp = await client.get("/api/v1/auth/me", headers={"x-api-key": data["key"]})
    await _error(resp, 401, "invalid_token")
    listed = await (await client.get("/api/v1/api-keys", headers=headers)).json()
    assert listed["items"] == []
    resp = await client.get("/api/v1/api-keys?include_revoked=true", headers=headers)
    items = (await resp.json())["items"]
    assert [i["id"] for i in items] == [data["id"]]
    assert items[0]["revoked_at"] is not None
    again = await client.delete(f"/api/v1/api-keys/{data['id']}", headers=headers)
    assert again.status == 204


async def test_unknown_keys_are_refused(client):
    for key in ("gk_deadbeef_nope", "not-even-shaped-like-a-key"):
        resp = await client.get("/api/v1/auth/me", headers={"x-api-key": key})
        await _error(resp, 401, "invalid_token")


async def test_keys_of_another_company_are_not_found(client, make_company, auth_headers):
    mine, theirs = await make_company(), await make_company()
    their_key = await _created(client, await auth_headers(theirs.owner))
    my_headers = await auth_headers(mine.owner)
    resp = await client.delete(f"/api/v1/api-keys/{their_key['id']}", headers=my_headers)
    await _error(resp, 404, "not_found")
    await _error(
        await client.delete("/api/v1/api-keys/not-a-uuid", headers=my_headers), 404, "not_found"
    )
    listed = await (await client.get("/api/v1/api-keys", headers=my_headers)).json()
    assert listed["items"] == []
    resp = await client.get("/api/v1/auth/me", headers={"x-api-key": their_key["key"]})
    assert (await resp.json())["tenant"]["id"] == str(theirs.tenant_id)


async def test_list_is_cursor_paginated(client, company, auth_headers):
    headers = await auth_headers(company.owner)
    ids = [(await _created(client, headers, name=f"key {n}"))["id"] for n in range(3)]
    first = await (await client.get("/api/v1/api-keys?limit=2", headers=headers)).json()
    assert [i["id"] for i in first["items"]] == ids[:0:-1]
    assert first["next_cursor"]
    resp = await client.get(
        f"/api/v1/api-keys?limit=2&cursor={first['next_cursor']}", headers=headers
    )
    second = await resp.json()
    assert [i["id"] for i in second["items"]] == [ids[0]]
    assert second["next_cursor"] is None
    resp = await client.get("/api/v1/api-keys?cursor=garbage", headers=headers)
    await _error(resp, 400, "invalid_cursor")


async def test_managing_keys_needs_the_permission(client, company, auth_headers):
    headers = await auth_headers(await company.add("supervisor"))
    await _error(await _create(client, headers), 403, "permission_denied")
    await _error(await client.get("/api/v1/api-keys", headers=headers), 403, "permission_denied")


async def test_create_and_revoke_are_audited(client, company, auth_headers):
    headers = await auth_headers(company.owner)
    data = await _created(client, headers, name="Audited")
    await client.delete(f"/api/v1/api-keys/{data['id']}", headers=headers)
    rows = (
        await AuditLog.select(AuditLog.action, AuditLog.actor, AuditLog.target_id, AuditLog.data)
        .where((AuditLog.tenant == company.tenant_id) & (AuditLog.target_type == "api_key"))
        .order_by(AuditLog.id)
        .output(load_json=True)
    )
    assert [r["action"] for r in rows] == ["api_key.created", "api_key.revoked"]
    assert {r["actor"] for r in rows} == {company.owner.user_id}
    assert {str(r["target_id"]) for r in rows} == {data["id"]}
    assert rows[0]["data"]["prefix"] == data["prefix"]
    assert data["key"] not in str(rows)
