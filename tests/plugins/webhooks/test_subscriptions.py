"""Subscriptions: CRUD through the real app, the secret shown once, RBAC, tenancy, and
the SSRF rules on the URLs companies give."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import login
from tests.plugins.webhooks.conftest import Setup, enable

BASE = "/api/v1/plugins/webhooks/subscriptions"


async def test_crud_and_the_secret_is_shown_once(setup: Setup, receiver: Any) -> None:
    created = await setup.subscribe(
        receiver.url, event_types=["message.new", "conversation.*"], description="CRM"
    )
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 30
    assert created["state"] == "active" and created["event_types"] == [
        "conversation.*", "message.new"
    ]
    sub_id = created["id"]

    shown = await setup.subscription(sub_id)
    assert "secret" not in shown and shown["url"] == receiver.url
    listed = await (await setup.client.get(BASE, headers=setup.headers)).json()
    assert [item["id"] for item in listed["items"]] == [sub_id]
    assert all("secret" not in item for item in listed["items"])

    resp = await setup.client.patch(
        f"{BASE}/{sub_id}", json={"active": False, "description": "ERP"}, headers=setup.headers
    )
    assert resp.status == 200
    assert (await resp.json())["state"] == "inactive"

    rotated = await setup.client.post(f"{BASE}/{sub_id}/rotate-secret", headers=setup.headers)
    body = await rotated.json()
    assert rotated.status == 200 and body["secret"] != created["secret"]
    assert (await setup.subscription(sub_id))["previous_secret_until"] is not None

    resp = await setup.client.delete(f"{BASE}/{sub_id}", headers=setup.headers)
    assert resp.status == 200
    resp = await setup.client.get(f"{BASE}/{sub_id}", headers=setup.headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_bad_input_is_a_422_never_a_500(setup: Setup, receiver: Any) -> None:
    for body in (
        {"url": receiver.url, "event_types": ["Message New"]},
        {"url": receiver.url, "surprise": 1},
        {"url": receiver.url, "active": 1},
        {"url": "not a url"},
    ):
        resp = await setup.client.post(BASE, json=body, headers=setup.headers)
        assert resp.status == 422, (body, await resp.text())
        assert "error" in await resp.json()
    resp = await setup.client.get(f"{BASE}/not-a-uuid", headers=setup.headers)
    assert resp.status == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://10.0.0.5/hook",  # private
        "http://192.168.1.10/hook",
        "http://[::1]/hook",  # loopback, v6
        "http://[::ffff:10.0.0.1]/hook",  # private inside v6
        "http://metadata.google.internal/hook",
        "http://127.0.0.2/hook",  # loopback outside the operator's allowance
        "http://user:pw@127.0.0.1/hook",
        "ftp://example.com/hook",
    ],
)
async def test_ssrf_targets_are_refused(setup: Setup, url: str) -> None:
    resp = await setup.client.post(BASE, json={"url": url}, headers=setup.headers)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["code"] in ("url_not_allowed", "validation_error")


async def test_loopback_needs_the_operator_and_https_is_required(
    setup: Setup, receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUICHE_WEBHOOKS_ALLOWED_NETWORKS", "")
    resp = await setup.client.post(BASE, json={"url": receiver.url}, headers=setup.headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "url_not_allowed"
    # a name is checked by what it resolves to: localhost is 127.0.0.1
    url = receiver.url.replace("127.0.0.1", "localhost")
    resp = await setup.client.post(BASE, json={"url": url}, headers=setup.headers)
    assert resp.status == 422

    monkeypatch.setenv("GUICHE_WEBHOOKS_ALLOWED_NETWORKS", "127.0.0.1/32")
    monkeypatch.setenv("GUICHE_WEBHOOKS_ALLOW_HTTP", "")
    resp = await setup.client.post(BASE, json={"url": receiver.url}, headers=setup.headers)
    assert resp.status == 422
    assert "https" in (await resp.json())["error"]["message"]


async def test_admins_only_and_companies_never_see_each_other(
    setup: Setup, receiver: Any, make_company: Any
) -> None:
    created = await setup.subscribe(receiver.url)
    sub_id = created["id"]

    agent = await setup.company.add("agent")
    agent_headers = await login(setup.client, agent)
    resp = await setup.client.get(BASE, headers=agent_headers)
    assert resp.status == 403
    admin = await setup.company.add("admin")
    resp = await setup.client.get(BASE, headers=await login(setup.client, admin))
    assert resp.status == 200

    other = await make_company()
    other_headers = await login(setup.client, other.owner)
    resp = await setup.client.get(BASE, headers=other_headers)
    assert resp.status == 404  # not enabled there: as if the route did not exist
    await enable(setup.client, other_headers)
    assert (await (await setup.client.get(BASE, headers=other_headers)).json())["items"] == []
    for method, path, body in (
        ("GET", f"{BASE}/{sub_id}", None),
        ("PATCH", f"{BASE}/{sub_id}", {"active": False}),
        ("DELETE", f"{BASE}/{sub_id}", None),
        ("POST", f"{BASE}/{sub_id}/rotate-secret", None),
        ("GET", f"{BASE}/{sub_id}/deliveries", None),
        ("POST", f"{BASE}/{sub_id}/replay", {"from_seq": 1}),
        ("POST", f"{BASE}/{sub_id}/redeliver", {"event_id": "evt_1"}),
    ):
        resp = await setup.client.request(method, path, json=body, headers=other_headers)
        assert resp.status == 404, (method, path, await resp.text())
    assert (await setup.subscription(sub_id))["active"] is True


async def test_odd_but_valid_input_is_never_a_500(setup: Setup, receiver: Any) -> None:
    sub = (await setup.subscribe(receiver.url))["id"]
    for path, body in (
        (f"{BASE}/{sub}/replay", {"since": "2026-01-01T00:00:00"}),  # no zone
        (f"{BASE}/{sub}/replay", {"from_seq": 2**63 - 1}),
        (f"{BASE}/{sub}/redeliver", {"event_id": "evt_999999999999999999"}),
    ):
        resp = await setup.client.post(path, json=body, headers=setup.headers)
        assert resp.status in (200, 404, 422), (body, await resp.text())
    resp = await setup.client.patch(f"{BASE}/{sub}", json={"url": None}, headers=setup.headers)
    assert resp.status == 422
    resp = await setup.client.patch(f"{BASE}/{sub}", json={}, headers=setup.headers)
    assert resp.status == 200
