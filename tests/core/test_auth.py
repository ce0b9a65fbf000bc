"""Login, access tokens, refresh rotation with theft detection, me/companies/switch, throttling."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from argon2 import PasswordHasher
from redis.asyncio import Redis

from guiche.app import create_app
from guiche.auth import tokens
from guiche.auth.passwords import needs_rehash
from guiche.auth.throttle import RedisCounters, login_throttle
from guiche.auth.tokens import InvalidToken, decode_access_token, issue_access_token
from guiche.companies.accounts import find_or_create_user
from guiche.foundation.config import ConfigError
from guiche.models import Membership, RefreshToken, User
from guiche.runtime.services import SERVICES


async def _login(client, email, password, **extra):
    return await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password, **extra}
    )


async def _tokens(client, member, **extra):
    resp = await _login(client, member.email, member.password, **extra)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _error(resp, status: int, code: str) -> dict:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == code, body
    return body["error"]


# --- login ---------------------------------------------------------------------------------


async def test_login_returns_token_pair_for_the_oldest_company(client, company):
    data = await _tokens(client, company.owner)
    assert data["token_type"] == "bearer"
    assert data["expires_in"] == 900
    assert data["access_token"] and data["refresh_token"]
    assert data["tenant"]["id"] == str(company.tenant_id)
    assert data["tenant"]["slug"] == company.slug
    assert data["tenant"]["role"] == "owner"
    resp = await client.get("/api/v1/auth/me", headers=_bearer(data["access_token"]))
    assert resp.status == 200


async def test_login_email_is_case_insensitive(client, company):
    resp = await _login(client, company.owner.email.upper(), company.owner.password)
    assert resp.status == 200


async def test_wrong_password_unknown_email_inactive_and_seatless_answer_alike(client, company):
    agent = await company.add("agent")
    await User.update({User.is_active: False}).where(User.id == agent.user_id)
    seatless_email = f"seatless-{uuid.uuid4().hex[:8]}@example.test"
    await find_or_create_user(seatless_email, "Nobody", "seatless-password")
    attempts = [
        (company.owner.email, "not-the-password"),
        (f"ghost-{uuid.uuid4().hex[:8]}@example.test", "whatever"),
        (agent.email, agent.password),
        (seatless_email, "seatless-password"),
    ]
    messages = set()
    for email, password in attempts:
        error = await _error(await _login(client, email, password), 401, "invalid_credentials")
        messages.add(error["message"])
    assert messages == {"Invalid email or password"}


async def test_inactive_membership_cannot_log_in(client, company):
    agent = await company.add("agent")
    await Membership.update({Membership.is_active: False}).where(Membership.user == agent.user_id)
    await _error(await _login(client, agent.email, agent.password), 401, "invalid_credentials")


async def test_login_validates_body(client):
    error = await _error(await client.post("/api/v1/auth/login", json={}), 422, "validation_error")
    assert {d["field"] for d in error["details"]} == {"email", "password"}


async def test_login_upgrades_a_weak_hash(client, company):
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(company.owner.password)
    assert needs_rehash(weak)
    await User.update({User.password_hash: weak}).where(User.id == company.owner.user_id)
    await _tokens(client, company.owner)
    row = await User.select(User.password_hash).where(User.id == company.owner.user_id).first()
    assert row["password_hash"] != weak
    assert not needs_rehash(row["password_hash"])
    await _tokens(client, company.owner)  # the new hash verifies


async def test_login_can_choose_the_company(client, make_company):
    first, second = await make_company(), await make_company()
    user = first.owner
    await Membership.insert(Membership(tenant=second.tenant_id, user=user.user_id, role="agent"))
    assert (await _tokens(client, user))["tenant"]["id"] == str(first.tenant_id)
    chosen = await _tokens(client, user, tenant_id=str(second.tenant_id))
    assert chosen["tenant"] == {
        "id": str(second.tenant_id),
        "name": chosen["tenant"]["name"],
        "slug": second.slug,
        "role": "agent",
    }
    other = await make_company()
    resp = await _login(client, user.email, user.password, tenant_id=str(other.tenant_id))
    await _error(resp, 401, "invalid_credentials")


# --- access tokens -------------------------------------------------------------------------


async def test_expired_access_token_is_refused(client, company):
    settings = client.app[SERVICES].settings
    token = issue_access_token(
        settings,
        user_id=company.owner.user_id,
        tenant_id=company.tenant_id,
        role="owner",
        platform_admin=False,
        ttl_seconds=60,
        now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
    )
    resp = await client.get("/api/v1/auth/me", headers=_bearer(token))
    error = await _error(resp, 401, "invalid_token")
    assert "expired" in error["message"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_remembered_token_still_expires_and_a_forged_one_is_never_remembered(
    client, company, make_settings, monkeypatch
):
    """Verified tokens are remembered (`_verified`); expiry is still checked on every use,
    and the memory is keyed by the signing key, so another key's token never matches."""
    settings = client.app[SERVICES].settings
    claims = {
        "user_id": company.owner.user_id,
        "tenant_id": company.tenant_id,
        "role": "owner",
        "platform_admin": False,
    }
    token = issue_access_token(settings, ttl_seconds=120, **claims)
    assert decode_access_token(settings, token).user_id == company.owner.user_id
    assert (await client.get("/api/v1/auth/me", headers=_bearer(token))).status == 200

    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=121)

    class _Later(dt.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return later

    monkeypatch.setattr(tokens.dt, "datetime", _Later)
    with pytest.raises(InvalidToken, match="expired"):
        decode_access_token(settings, token)
    monkeypatch.undo()

    other = make_settings(secret_key="another-secret-" + "z" * 40)
    with pytest.raises(InvalidToken):
        decode_access_token(other, token)  # same token, another key: verified anew
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for _ in range(2):
        await _error(
            await client.get("/api/v1/auth/me", headers=_bearer(forged)), 401, "invalid_token"
        )


async def test_forged_and_malformed_credentials_are_refused(client, company, make_settings):
    other = make_settings(secret_key="another-secret-" + "y" * 40)
    forged = issue_access_token(
        other,
        user_id=company.owner.user_id,
        tenant_id=company.tenant_id,
        role="owner",
        platform_admin=True,
    )
    for headers in (
        _bearer(forged),
        _bearer("not.a.jwt"),
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"Authorization": "Bearer "},
    ):
        resp = await client.get("/api/v1/auth/me", headers=headers)
        await _error(resp, 401, "invalid_token")


async def test_bad_credential_is_refused_even_on_public_routes(client):
    resp = await client.post(
        "/api/v1/auth/login", json={"email": "a@b.c", "password": "x"}, headers=_bearer("junk")
    )
    await _error(resp, 401, "invalid_token")


async def test_no_credential_means_no_principal(client):
    await _error(await client.get("/api/v1/auth/me"), 401, "not_authenticated")
    assert (await client.get("/health")).status == 200


async def test_refresh_token_is_not_an_access_token(client, company):
    data = await _tokens(client, company.owner)
    resp = await client.get("/api/v1/auth/me", headers=_bearer(data["refresh_token"]))
    await _error(resp, 401, "invalid_token")


async def test_app_refuses_to_start_without_a_secret_key(make_settings):
    with pytest.raises(ConfigError, match="GUICHE_SECRET_KEY: required"):
        create_app(make_settings(secret_key=None))
    with pytest.raises(ConfigError, match="GUICHE_SECRET_KEY: must be at least 32"):
        create_app(make_settings(secret_key="short"))


# --- refresh and logout --------------------------------------------------------------------


async def _refresh(client, token):
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_within_the_family(client, company):
    first = await _tokens(client, company.owner)
    resp = await _refresh(client, first["refresh_token"])
    assert resp.status == 200, await resp.text()
    second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["tenant"]["id"] == str(company.tenant_id)
    me = await client.get("/api/v1/auth/me", headers=_bearer(second["access_token"]))
    assert me.status == 200
    rows = await RefreshToken.select(RefreshToken.family, RefreshToken.used_at).where(
        RefreshToken.user == company.owner.user_id
    )
    assert len({row["family"] for row in rows}) == 1
    assert sum(row["used_at"] is not None for row in rows) == 1
    third = await _refresh(client, second["refresh_token"])
    assert third.status == 200


async def test_reusing_a_rotated_token_revokes_the_family(client, company):
    stolen = (await _tokens(client, company.owner))["refresh_token"]
    newest = (await (await _refresh(client, stolen)).json())["refresh_token"]
    error = await _error(await _refresh(client, stolen), 401, "invalid_refresh_token")
    assert "reused" in error["message"]
    await _error(await _refresh(client, newest), 401, "invalid_refresh_token")
    live = await RefreshToken.count().where(
        (RefreshToken.user == company.owner.user_id) & RefreshToken.revoked_at.is_null()
    )
    assert live == 0


async def test_concurrent_refreshes_let_exactly_one_win(client, company):
    token = (await _tokens(client, company.owner))["refresh_token"]
    responses = await asyncio.gather(*(_refresh(client, token) for _ in range(4)))
    assert sorted(r.status for r in responses) == [200, 401, 401, 401]
    winner = next(r for r in responses if r.status == 200)
    successor = (await winner.json())["refresh_token"]
    await _error(await _refresh(client, successor), 401, "invalid_refresh_token")


async def test_refresh_rejects_unknown_tokens_and_disabled_users(client, company):
    await _error(await _refresh(client, "no-such-token"), 401, "invalid_refresh_token")
    agent = await company.add("agent")
    token = (await _tokens(client, agent))["refresh_token"]
    await Membership.update({Membership.is_active: False}).where(Membership.user == agent.user_id)
    await _error(await _refresh(client, token), 401, "invalid_refresh_token")


async def test_refresh_picks_up_a_role_change(client, company):
    agent = await company.add("agent")
    token = (await _tokens(client, agent))["refresh_token"]
    await Membership.update({Membership.role: "supervisor"}).where(Membership.user == agent.user_id)
    data = await (await _refresh(client, token)).json()
    assert data["tenant"]["role"] == "supervisor"


async def test_logout_revokes_the_family(client, company):
    first = await _tokens(client, company.owner)
    second = await (await _refresh(client, first["refresh_token"])).json()
    resp = await client.post("/api/v1/auth/logout", json={"refresh_token": second["refresh_token"]})
    assert resp.status == 204
    await _error(await _refresh(client, second["refresh_token"]), 401, "invalid_refresh_token")
    other_session = await _tokens(client, company.owner)  # other families are untouched
    assert (await _refresh(client, other_session["refresh_token"])).status == 200
    unknown = await client.post("/api/v1/auth/logout", json={"refresh_token": "nope"})
    assert unknown.status == 204


# --- me, companies, switch -----------------------------------------------------------------


async def test_me_describes_user_company_and_permissions(client, company, auth_headers):
    viewer = await company.add("viewer")
    resp = await client.get("/api/v1/auth/me", headers=await auth_headers(viewer))
    assert resp.status == 200
    data = await resp.json()
    assert data["kind"] == "user"
    assert data["user"] == {
        "id": str(viewer.user_id),
        "email": viewer.email,
        "name": "Viewer",
        "is_platform_admin": False,
    }
    assert data["tenant"]["id"] == str(company.tenant_id)
    assert data["role"] == "viewer"
    assert "tenant.settings.read" in data["permissions"]
    assert "tenant.settings.manage" not in data["permissions"]
    assert data["permissions"] == sorted(data["permissions"])


async def test_platform_admin_token_carries_platform_permissions(client, company, auth_headers):
    await User.update({User.is_platform_admin: True}).where(User.id == company.owner.user_id)
    data = await (
        await client.get("/api/v1/auth/me", headers=await auth_headers(company.owner))
    ).json()
    assert data["user"]["is_platform_admin"] is True
    assert "platform.tenants.manage" in data["permissions"]


async def test_companies_and_switch(client, make_company, auth_headers):
    home, shop, stranger = await make_company(), await make_company(), await make_company()
    user = home.owner
    await Membership.insert(Membership(tenant=shop.tenant_id, user=user.user_id, role="admin"))
    headers = await auth_headers(user)
    resp = await client.get("/api/v1/auth/companies", headers=headers)
    assert resp.status == 200
    items = (await resp.json())["items"]
    assert [(i["id"], i["role"], i["active"]) for i in items] == [
        (str(home.tenant_id), "owner", True),
        (str(shop.tenant_id), "admin", False),
    ]

    resp = await client.post(
        "/api/v1/auth/switch", json={"tenant_id": str(shop.tenant_id)}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    switched = await resp.json()
    assert switched["tenant"]["id"] == str(shop.tenant_id)
    assert switched["tenant"]["role"] == "admin"
    me = await (
        await client.get("/api/v1/auth/me", headers=_bearer(switched["access_token"]))
    ).json()
    assert me["tenant"]["id"] == str(shop.tenant_id)
    assert me["role"] == "admin"
    refreshed = await (await _refresh(client, switched["refresh_token"])).json()
    assert refreshed["tenant"]["id"] == str(shop.tenant_id)

    resp = await client.post(
        "/api/v1/auth/switch", json={"tenant_id": str(stranger.tenant_id)}, headers=headers
    )
    await _error(resp, 404, "not_a_member")
    resp = await client.post(
        "/api/v1/auth/switch", json={"tenant_id": str(uuid.uuid4())}, headers=headers
    )
    await _error(resp, 404, "not_a_member")


# --- throttling ----------------------------------------------------------------------------


async def _fail(client, email, ip_note=""):
    return await _login(client, email, "wrong-password" + ip_note)


async def test_failed_logins_per_email_are_throttled_in_memory(make_client, make_company):
    client = await make_client(login_max_attempts_per_email=3)
    company = await make_company()
    throttle = login_throttle(client.app[SERVICES])
    assert throttle.shared is None and throttle.counters is throttle.local
    owner = company.owner
    for _ in range(3):
        await _error(await _fail(client, owner.email), 401, "invalid_credentials")
    resp = await _login(client, owner.email, owner.password)  # even the right password waits
    error = await _error(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["Retry-After"]) <= 900
    assert "account" in error["message"]
    other = await company.add("agent")
    assert (await _login(client, other.email, other.password)).status == 200


async def test_successful_login_clears_the_email_counter(make_client, make_company):
    client = await make_client(login_max_attempts_per_email=3)
    owner = (await make_company()).owner
    for _ in range(2):
        await _error(await _fail(client, owner.email), 401, "invalid_credentials")
    assert (await _login(client, owner.email, owner.password)).status == 200
    for _ in range(2):
        await _error(await _fail(client, owner.email), 401, "invalid_credentials")
    assert (await _login(client, owner.email, owner.password)).status == 200


async def test_failed_attempts_per_ip_are_throttled_and_successes_do_not_count(
    make_client, make_company
):
    client = await make_client(login_max_attempts_per_ip=3)
    owner = (await make_company()).owner
    for _ in range(10):  # a busy office signing in all day is no attack
        assert (await _login(client, owner.email, owner.password)).status == 200
    for n in range(3):  # different accounts: only the address limit applies
        await _error(
            await _fail(client, f"ghost-{n}-{uuid.uuid4().hex[:6]}@x.test"),
            401,
            "invalid_credentials",
        )
    resp = await _login(client, owner.email, owner.password)
    error = await _error(resp, 429, "rate_limited")
    assert "address" in error["message"]
    assert int(resp.headers["Retry-After"]) >= 1


async def test_behind_a_trusted_proxy_each_real_client_has_its_own_failures(
    make_client, make_company
):
    client = await make_client(trusted_proxies=["127.0.0.1"], login_max_attempts_per_ip=3)
    company = await make_company()
    members = [company.owner, *[await company.add("agent") for _ in range(4)]]

    def via(ip: str) -> dict[str, str]:
        return {"X-Forwarded-For": ip}

    for n in range(30):  # the whole company logs in through the load balancer
        member = members[n % len(members)]
        resp = await client.post(
            "/api/v1/auth/login",
            json={"email": member.email, "password": member.password},
            headers=via(f"203.0.113.{n}"),
        )
        assert resp.status == 200, await resp.text()
    attacker, colleague = via("198.51.100.7"), via("198.51.100.8")
    for n in range(3):
        resp = await client.post(
            "/api/v1/auth/login",
            json={"email": f"spray-{n}-{uuid.uuid4().hex[:6]}@x.test", "password": "guess"},
            headers=attacker,
        )
        await _error(resp, 401, "invalid_credentials")
    body = {"email": members[1].email, "password": members[1].password}
    resp = await client.post("/api/v1/auth/login", json=body, headers=attacker)
    assert "address" in (await _error(resp, 429, "rate_limited"))["message"]
    resp = await client.post("/api/v1/auth/login", json=body, headers=colleague)
    assert resp.status == 200  # the proxy's own address was never the one counted


async def test_concurrent_guesses_cannot_outrun_the_account_limit(make_client, make_company):
    client = await make_client(login_max_attempts_per_email=3)
    owner = (await make_company()).owner
    answers = await asyncio.gather(*(_fail(client, owner.email) for _ in range(12)))
    assert sorted(resp.status for resp in answers) == [401] * 3 + [429] * 9


def _unreachable_redis(throttle) -> Redis:
    """Point the throttle's shared store at a port nobody listens on: Redis is 'down'."""
    unreachable = Redis.from_url("redis://127.0.0.1:1/0")
    throttle.shared = RedisCounters(unreachable)
    return unreachable


async def test_with_redis_down_the_throttle_falls_back_to_this_process(
    make_client, make_company, caplog
):
    client = await make_client(login_max_attempts_per_ip=20)
    owner = (await make_company()).owner
    throttle = login_throttle(client.app[SERVICES])
    unreachable = _unreachable_redis(throttle)
    try:
        with caplog.at_level("WARNING", logger="guiche.auth"):
            statuses = [
                (await _fail(client, f"spray-{n}-{uuid.uuid4().hex[:6]}@x.test")).status
                for n in range(30)
            ]
            assert statuses == [401] * 20 + [429] * 10
            # one account: limited by its own counter too, while Redis is still away
            for _ in range(5):
                await _fail(client, owner.email)
        outage_logs = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
        assert len(outage_logs) == 1  # once per outage, not once per attempt
    finally:
        await unreachable.aclose()


async def test_an_account_locked_in_redis_stays_locked_when_redis_goes_down(
    make_client, make_company, require_redis
):
    client = await make_client(redis_url=require_redis, login_max_attempts_per_email=3)
    owner = (await make_company()).owner
    throttle = login_throttle(client.app[SERVICES])
    for _ in range(3):
        await _error(await _fail(client, owner.email), 401, "invalid_credentials")
    await _error(await _login(client, owner.email, owner.password), 429, "rate_limited")
    real = throttle.shared
    unreachable = _unreachable_redis(throttle)
    try:
        resp = await _login(client, owner.email, owner.password)
        assert "account" in (await _error(resp, 429, "rate_limited"))["message"]
    finally:
        await unreachable.aclose()
        throttle.shared = real
    await throttle.shared.clear(throttle.email_key(owner.email))


async def test_throttle_is_shared_through_redis(make_client, make_company, require_redis):
    first = await make_client(redis_url=require_redis, login_max_attempts_per_email=2)
    second = await make_client(redis_url=require_redis, login_max_attempts_per_email=2)
    throttle = login_throttle(first.app[SERVICES])
    assert isinstance(throttle.shared, RedisCounters)
    owner = (await make_company()).owner
    await _error(await _fail(first, owner.email), 401, "invalid_credentials")
    await _error(await _fail(second, owner.email), 401, "invalid_credentials")
    resp = await _login(first, owner.email, owner.password)
    await _error(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["Retry-After"]) <= 900
    resp = await _login(second, owner.email, owner.password)  # the other process agrees
    await _error(resp, 429, "rate_limited")
    await throttle.counters.clear(throttle.email_key(owner.email))
    assert (await _login(second, owner.email, owner.password)).status == 200


async def test_per_ip_throttle_through_redis(make_client, make_company, require_redis):
    client = await make_client(redis_url=require_redis, login_max_attempts_per_ip=2)
    throttle = login_throttle(client.app[SERVICES])
    await throttle.counters.clear(throttle.ip_key("127.0.0.1"))  # other tests of this session
    owner = (await make_company()).owner
    for _ in range(3):
        assert (await _login(client, owner.email, owner.password)).status == 200
    for n in range(2):
        await _error(
            await _fail(client, f"ghost-{n}-{uuid.uuid4().hex[:6]}@x.test"),
            401,
            "invalid_credentials",
        )
    resp = await _login(client, owner.email, owner.password)
    await _error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
    await throttle.counters.clear(throttle.ip_key("127.0.0.1"))
