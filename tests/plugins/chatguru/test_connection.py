"""Settings, credentials and the connection test: what was found, or a precise error,
and nothing stored for bad credentials."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest
from guiche_chatguru.config import ALLOW_ANY_HOST_ENV

from tests.conftest import login

from .conftest import BASE, catalog, credentials, enable, fetch
from .fake_chatguru import PASSWORD


@pytest.fixture
async def admin(client: Any, make_company: Any, fake: Any) -> dict[str, str]:
    company = await make_company()
    headers = await login(client, company.owner)
    await enable(client, headers)
    return headers


async def test_connection_reports_what_the_panel_shows(client, admin, fake) -> None:
    resp = await client.post(f"{BASE}/test-connection", json=credentials(fake), headers=admin)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["ok"] is True and body["chats"] == 3
    assert body["phones"] == ["e48624590c8e11c46bb0fb57"]
    assert body["agents"] == ["U54e92470973b6399e956886e"]
    assert body["archived_chats"] == 1
    assert body["account"] == {
        "panel": fake.url,
        "login": credentials(fake)["email"],
        "account_id": credentials(fake)["account_id"],
    }
    assert body["api"] == "verified"  # the documented API took the key, account and phone
    assert fake.logins == 1


async def test_a_refused_api_key_is_a_clear_error(client, admin, fake) -> None:
    creds = credentials(fake, api_key="not-the-key")
    resp = await client.post(f"{BASE}/test-connection", json=creds, headers=admin)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "bad_credentials" and "documented API" in error["message"]
    assert "not-the-key" not in await resp.text()


async def test_without_the_api_the_panel_alone_is_tested(client, admin, fake) -> None:
    creds = credentials(fake, api_key=None, account_id=None, phone_id=None)
    resp = await client.post(f"{BASE}/test-connection", json=creds, headers=admin)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["api"] == "absent"
    assert not fake.calls_to("/api/v1")


async def test_session_cookie_instead_of_login(client, admin, fake) -> None:
    token = uuid.uuid4().hex
    fake.sessions.add(token)
    creds = credentials(fake, email=None, password=None, session_cookie=token)
    resp = await client.post(f"{BASE}/test-connection", json=creds, headers=admin)
    assert resp.status == 200, await resp.text()
    assert fake.logins == 0


async def test_bad_password_is_a_clear_error(client, admin, fake) -> None:
    creds = credentials(fake, password="wrong")
    resp = await client.post(f"{BASE}/test-connection", json=creds, headers=admin)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "bad_credentials"
    assert "email or password" in error["message"]


async def test_unreachable_panel(client, admin, fake) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    creds = credentials(fake, panel_url=f"http://127.0.0.1:{port}")
    resp = await client.post(f"{BASE}/test-connection", json=creds, headers=admin)
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "unreachable"


async def test_unexpected_shape(client, admin, fake) -> None:
    fake.fail_next("/chatlist/store", 200)  # a 200 whose body has no `chats`
    resp = await client.post(f"{BASE}/test-connection", json=credentials(fake), headers=admin)
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert error["code"] == "unexpected_shape"
    assert "chats" in error["message"]


async def test_credentials_are_validated(client, admin, fake) -> None:
    resp = await client.post(
        f"{BASE}/test-connection", json={"panel_url": fake.url}, headers=admin
    )
    assert resp.status == 422
    resp = await client.post(
        f"{BASE}/test-connection", json=credentials(fake, extra="x"), headers=admin
    )
    assert resp.status == 422


async def test_panel_must_be_chatguru_unless_the_operator_allows(
    client, admin, fake, monkeypatch
) -> None:
    monkeypatch.delenv(ALLOW_ANY_HOST_ENV)
    resp = await client.post(f"{BASE}/test-connection", json=credentials(fake), headers=admin)
    assert resp.status == 422
    assert "chatguru.app" in str(await resp.json())


async def test_settings_have_floors(client, admin) -> None:
    for bad in ({"poll_interval_seconds": 1}, {"time_zone": "Mars/Olympus"}, {"concurrency": 0}):
        resp = await client.put(
            "/api/v1/plugins/chatguru", json={"enabled": True, "settings": bad}, headers=admin
        )
        assert resp.status == 422, bad
    resp = await client.get("/api/v1/plugins", headers=admin)
    listed = await resp.json()
    listed = listed["items"] if isinstance(listed, dict) else listed
    [mine] = [p for p in listed if p["name"] == "chatguru"]
    assert mine["settings"]["time_zone"] == "America/Sao_Paulo"
    assert mine["settings"]["poll_interval_seconds"] == 5.0


async def test_bad_credentials_channel_stores_nothing(client, admin, fake) -> None:
    resp = await client.post(
        "/api/v1/channels",
        json={
            "type": "chatguru",
            "name": "ChatGuru",
            "credentials": credentials(fake, password="wrong"),
        },
        headers=admin,
    )
    assert resp.status == 201, await resp.text()
    channel = await resp.json()
    assert channel["state"] == "provisioning_failed"
    assert "email or password" in channel["state_detail"]
    # the password is stored encrypted and never shown
    assert PASSWORD not in await resp.text() and "wrong" not in await resp.text()
    account = type("A", (), {"url": f"{BASE}/accounts/{channel['id']}", "headers": admin})
    job = await catalog(client, account)
    assert job["state"] == "failed"
    assert job["error"]["code"] == "bad_credentials"
    rows = await fetch("SELECT count(*) AS n FROM messages WHERE channel = {}", channel["id"])
    assert rows[0]["n"] == 0
    rows = await fetch("SELECT count(*) AS n FROM chatguru_chats WHERE account = {}", channel["id"])
    assert rows[0]["n"] == 0
