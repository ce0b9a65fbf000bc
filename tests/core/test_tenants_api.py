"""Companies over HTTP: platform admins create/list them; owners manage their own settings."""

from __future__ import annotations

import uuid

from guiche.models import AuditLog, Tenant, User


async def _error(resp, status: int, code: str) -> dict:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == code, body
    return body["error"]


async def _platform_admin_headers(company, auth_headers) -> dict[str, str]:
    """Platform admin is a flag only the CLI sets; tests set it in the database."""
    member = await company.add("viewer")
    await User.update({User.is_platform_admin: True}).where(User.id == member.user_id)
    return await auth_headers(member)


def _new_owner_email() -> str:
    return f"new-owner-{uuid.uuid4().hex[:8]}@Example.test"


async def test_platform_admin_creates_a_company_whose_owner_can_log_in(
    client, company, auth_headers
):
    headers = await _platform_admin_headers(company, auth_headers)
    email = _new_owner_email()
    resp = await client.post(
        "/api/v1/tenants",
        json={
            "name": "Açaí do Zé",
            "owner_email": email,
            "owner_name": "Zé",
            "owner_password": "a-strong-password",
        },
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["name"] == "Açaí do Zé"
    assert created["slug"].startswith("acai-do-ze")
    assert created["owner"]["email"] == email.lower()

    login = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": "a-strong-password"}
    )
    assert login.status == 200
    assert (await login.json())["tenant"] == {
        "id": created["id"],
        "name": "Açaí do Zé",
        "slug": created["slug"],
        "role": "owner",
    }
    audit = (
        await AuditLog.select(AuditLog.action, AuditLog.target_id)
        .where(AuditLog.tenant == uuid.UUID(created["id"]))
        .first()
    )
    assert audit == {"action": "tenant.created", "target_id": uuid.UUID(created["id"])}


async def test_an_existing_user_can_own_a_new_company(client, company, auth_headers):
    headers = await _platform_admin_headers(company, auth_headers)
    resp = await client.post(
        "/api/v1/tenants",
        json={"name": "Second shop", "owner_email": company.owner.email},
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["owner"]["id"] == str(company.owner.user_id)
    resp = await client.post(
        "/api/v1/tenants",
        json={"name": "No password", "owner_email": _new_owner_email()},
        headers=headers,
    )
    error = await _error(resp, 422, "validation_error")
    assert error["details"][0]["field"] == "password"
    # the company and its owner are created in one transaction: no orphan company remains
    assert not await Tenant.exists().where(Tenant.name == "No password")


async def test_company_creation_validates_input(client, company, auth_headers):
    headers = await _platform_admin_headers(company, auth_headers)
    resp = await client.post(
        "/api/v1/tenants",
        json={"name": " ", "owner_email": "x@y.z", "owner_password": "short", "extra": 1},
        headers=headers,
    )
    error = await _error(resp, 422, "validation_error")
    assert {d["field"] for d in error["details"]} == {"name", "owner_password", "extra"}


async def test_platform_admins_list_companies(client, make_company, auth_headers):
    mine = await make_company()
    headers = await _platform_admin_headers(mine, auth_headers)
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/v1/tenants?limit=50" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url, headers=headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert str(mine.tenant_id) in seen
    assert len(seen) == len(set(seen))


async def test_company_admin_is_not_a_platform_admin(client, company, auth_headers):
    headers = await auth_headers(company.owner)
    resp = await client.post(
        "/api/v1/tenants",
        json={"name": "Nope", "owner_email": _new_owner_email(), "owner_password": "whatever1"},
        headers=headers,
    )
    await _error(resp, 403, "permission_denied")
    await _error(await client.get("/api/v1/tenants", headers=headers), 403, "permission_denied")
    await _error(await client.get("/api/v1/tenants"), 401, "not_authenticated")


async def test_every_member_reads_company_settings(client, company, auth_headers):
    viewer = await company.add("viewer")
    resp = await client.get("/api/v1/tenant", headers=await auth_headers(viewer))
    assert resp.status == 200
    data = await resp.json()
    assert data["id"] == str(company.tenant_id)
    assert data["slug"] == company.slug
    assert data["settings"] == {
        "default_region": None,
        "timezone": "America/Sao_Paulo",
        "business_hours": {},
        "auto_close_hours": 24,
        "max_concurrent_chats_default": 5,
    }


async def test_only_the_owner_changes_settings(client, company, auth_headers):
    for role in ("admin", "supervisor", "agent", "viewer"):
        headers = await auth_headers(await company.add(role))
        resp = await client.patch("/api/v1/tenant", json={"name": "Hijacked"}, headers=headers)
        await _error(resp, 403, "permission_denied")

    owner = await auth_headers(company.owner)
    resp = await client.patch(
        "/api/v1/tenant",
        json={
            "name": "Renamed",
            "settings": {
                "timezone": "America/Manaus",
                "default_region": "pt",
                "auto_close_hours": 48,
                "business_hours": {"mon": [{"start": "08:00", "end": "12:00"}]},
            },
        },
        headers=owner,
    )
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["name"] == "Renamed"
    assert data["settings"]["timezone"] == "America/Manaus"
    assert data["settings"]["default_region"] == "PT"
    assert data["settings"]["auto_close_hours"] == 48
    assert data["settings"]["business_hours"] == {"mon": [{"start": "08:00:00", "end": "12:00:00"}]}

    # a patch merges; null resets one key to its default
    resp = await client.patch(
        "/api/v1/tenant", json={"settings": {"auto_close_hours": None}}, headers=owner
    )
    data = await resp.json()
    assert data["settings"]["auto_close_hours"] == 24
    assert data["settings"]["timezone"] == "America/Manaus"
    stored = (
        await Tenant.select(Tenant.settings)
        .where(Tenant.id == company.tenant_id)
        .output(load_json=True)
        .first()
    )
    assert "auto_close_hours" not in stored["settings"]


async def test_settings_reject_unknown_keys_and_bad_values(client, company, auth_headers):
    owner = await auth_headers(company.owner)
    cases = [
        ({"settings": {"bogus": 1}}, "settings.bogus"),
        ({"settings": {"bogus": None}}, "settings.bogus"),
        ({"settings": {"auto_close_hours": 0}}, "settings.auto_close_hours"),
        ({"settings": {"auto_close_hours": 721}}, "settings.auto_close_hours"),
        ({"settings": {"timezone": "Mars/Olympus"}}, "settings.timezone"),
        ({"settings": {"default_region": "XX"}}, "settings.default_region"),
        ({"settings": {"business_hours": {"funday": []}}}, "settings.business_hours.funday"),
        (
            {"settings": {"business_hours": {"tue": [{"start": "18:00", "end": "08:00"}]}}},
            "settings.business_hours.tue.0",
        ),
        ({"nickname": "x"}, "nickname"),
        ({"name": ""}, "name"),
    ]
    for body, field in cases:
        resp = await client.patch("/api/v1/tenant", json=body, headers=owner)
        error = await _error(resp, 422, "validation_error")
        assert any(d["field"].startswith(field) for d in error["details"]), (body, error)
    data = await (await client.get("/api/v1/tenant", headers=owner)).json()
    assert data["settings"]["auto_close_hours"] == 24


async def test_settings_changes_are_audited(client, company, auth_headers):
    owner = await auth_headers(company.owner)
    await client.patch(
        "/api/v1/tenant", json={"settings": {"max_concurrent_chats_default": 8}}, headers=owner
    )
    await client.patch(
        "/api/v1/tenant", json={"settings": {"max_concurrent_chats_default": 8}}, headers=owner
    )
    rows = (
        await AuditLog.select(AuditLog.action, AuditLog.actor, AuditLog.data)
        .where((AuditLog.tenant == company.tenant_id) & (AuditLog.action == "tenant.updated"))
        .output(load_json=True)
    )
    assert len(rows) == 1  # the no-op second patch records nothing
    assert rows[0]["actor"] == company.owner.user_id
    assert rows[0]["data"]["changes"] == {
        "settings": {"max_concurrent_chats_default": {"from": 5, "to": 8}}
    }
