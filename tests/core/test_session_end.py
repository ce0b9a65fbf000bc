"""Ending sessions takes effect at once: deactivation, password change, "log out
everywhere" and role changes reach access tokens that have not expired yet."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from guiche.companies.accounts import add_member
from tests.conftest import Member, login


async def _tokens(client: Any, member: Member, tenant_id: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"email": member.email, "password": member.password}
    if tenant_id is not None:
        body["tenant_id"] = str(tenant_id)
    resp = await client.post("/api/v1/auth/login", json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _me(client: Any, tokens: dict[str, Any]) -> Any:
    return await client.get("/api/v1/auth/me", headers=_bearer(tokens))


async def _status_once_notified(request: Callable[[], Awaitable[Any]], expected: int) -> int:
    """The request's status once a bus notice had up to 2.5 s to arrive (the last one
    seen otherwise, so the caller's assertion shows what it got)."""
    for _ in range(50):
        status = (await request()).status
        if status == expected:
            break
        await asyncio.sleep(0.05)
    return status


async def test_a_deactivated_seat_s_access_token_stops_at_once(client, company):
    agent = await company.add("agent")
    tokens = await _tokens(client, agent)
    assert (await _me(client, tokens)).status == 200  # cached as valid

    resp = await client.post(
        f"/api/v1/users/{agent.user_id}/deactivate", headers=await login(client, company.owner)
    )
    assert resp.status == 200, await resp.text()

    resp = await _me(client, tokens)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_token"
    resp = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert resp.status == 401


async def test_reactivation_does_not_revive_tokens_issued_before(client, company):
    agent = await company.add("agent")
    tokens = await _tokens(client, agent)
    owner = await login(client, company.owner)
    await client.post(f"/api/v1/users/{agent.user_id}/deactivate", headers=owner)
    await client.post(f"/api/v1/users/{agent.user_id}/activate", headers=owner)

    assert (await _me(client, tokens)).status == 401
    assert (await _me(client, await _tokens(client, agent))).status == 200


async def test_deactivation_in_one_company_leaves_the_other_refreshable(
    client, company, make_company
):
    other = await make_company()
    agent = await company.add("agent")
    await add_member(other.tenant_id, agent.user_id, "agent")
    in_other = await _tokens(client, agent, other.tenant_id)

    await client.post(
        f"/api/v1/users/{agent.user_id}/deactivate", headers=await login(client, company.owner)
    )

    # The version moved, so the other company's access token is refused too; its refresh
    # token was not revoked, so the client gets a fresh pair without asking the person.
    assert (await _me(client, in_other)).status == 401
    resp = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": in_other["refresh_token"]}
    )
    assert resp.status == 200, await resp.text()
    renewed = await resp.json()
    me = await _me(client, renewed)
    assert me.status == 200
    assert (await me.json())["tenant"]["id"] == str(other.tenant_id)


async def test_a_role_change_applies_to_live_tokens(client, company):
    supervisor = await company.add("supervisor")
    tokens = await _tokens(client, supervisor)
    assert (await client.get("/api/v1/users", headers=_bearer(tokens))).status == 200

    resp = await client.patch(
        f"/api/v1/users/{supervisor.user_id}",
        json={"role": "viewer"},
        headers=await login(client, company.owner),
    )
    assert resp.status == 200, await resp.text()

    me = await _me(client, tokens)
    assert (await me.json())["role"] == "viewer"
    assert (await client.get("/api/v1/users", headers=_bearer(tokens))).status == 403


async def test_password_change_ends_every_other_session(client, company):
    agent = await company.add("agent")
    laptop = await _tokens(client, agent)
    phone = await _tokens(client, agent)

    resp = await client.post(
        "/api/v1/auth/password",
        json={"current_password": "not-it", "new_password": "a-new-password-1"},
        headers=_bearer(laptop),
    )
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "wrong_password"

    resp = await client.post(
        "/api/v1/auth/password",
        json={"current_password": agent.password, "new_password": "a-new-password-1"},
        headers=_bearer(laptop),
    )
    assert resp.status == 200, await resp.text()
    fresh = await resp.json()

    assert (await _me(client, fresh)).status == 200
    for old in (laptop, phone):
        assert (await _me(client, old)).status == 401
        resp = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}
        )
        assert resp.status == 401
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert resp.status == 200
    old_login = await client.post(
        "/api/v1/auth/login", json={"email": agent.email, "password": agent.password}
    )
    assert old_login.status == 401
    new_login = await client.post(
        "/api/v1/auth/login", json={"email": agent.email, "password": "a-new-password-1"}
    )
    assert new_login.status == 200


async def test_a_too_short_new_password_is_a_422(client, company):
    agent = await company.add("agent")
    resp = await client.post(
        "/api/v1/auth/password",
        json={"current_password": agent.password, "new_password": "short"},
        headers=_bearer(await _tokens(client, agent)),
    )
    assert resp.status == 422


async def test_log_out_everywhere(client, company):
    agent = await company.add("agent")
    first, second = await _tokens(client, agent), await _tokens(client, agent)

    resp = await client.post("/api/v1/auth/logout-all", headers=_bearer(first))
    assert resp.status == 204

    for tokens in (first, second):
        assert (await _me(client, tokens)).status == 401
        resp = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert resp.status == 401
    assert (await _me(client, await _tokens(client, agent))).status == 200


async def test_api_keys_cannot_log_out_everywhere(client, company):
    owner = await login(client, company.owner)
    resp = await client.post(
        "/api/v1/api-keys", json={"name": "crm", "role": "admin"}, headers=owner
    )
    assert resp.status == 201, await resp.text()
    key = (await resp.json())["key"]
    resp = await client.post("/api/v1/auth/logout-all", headers={"x-api-key": key})
    assert resp.status == 403


async def test_another_process_drops_its_cached_access_at_once(make_client, require_redis, company):
    """Two web processes on one Redis: deactivation in one is refused in the other now,
    not after the cache's TTL (an hour here)."""
    first = await make_client(redis_url=require_redis, channel_cache_ttl_seconds=3600)
    second = await make_client(redis_url=require_redis, channel_cache_ttl_seconds=3600)
    agent = await company.add("agent")
    tokens = await _tokens(first, agent)
    assert (await _me(second, tokens)).status == 200  # `second` caches the agent's access

    resp = await first.post(
        f"/api/v1/users/{agent.user_id}/deactivate", headers=await login(first, company.owner)
    )
    assert resp.status == 200

    # the notice crosses Redis: give it its round trip
    assert await _status_once_notified(lambda: _me(second, tokens), 401) == 401


async def test_the_cli_platform_grant_reaches_running_processes(
    make_client, make_settings, require_redis, company
):
    """`guiche users grant-platform-admin` writes the row and, with Redis, tells the
    running processes: a signed-in person's next request has the platform rights."""
    from guiche.cli import notify_user_access_changed
    from guiche.models import User

    web = await make_client(redis_url=require_redis, channel_cache_ttl_seconds=3600)
    tokens = await _tokens(web, company.owner)
    assert (await web.get("/api/v1/tenants", headers=_bearer(tokens))).status == 403

    await User.update({User.is_platform_admin: True}).where(User.id == company.owner.user_id)
    await notify_user_access_changed(make_settings(redis_url=require_redis), company.owner.user_id)

    async def tenants() -> Any:
        return await web.get("/api/v1/tenants", headers=_bearer(tokens))

    assert await _status_once_notified(tenants, 200) == 200
