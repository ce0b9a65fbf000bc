"""GET /api/v1/audit and GET /api/v1/provider-usage: admins read their company's raw rows."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from guiche.models import AuditLog
from tests.conftest import Company, login

T0 = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)


async def _audit(company: Company, action: str, at: dt.datetime, actor: Any = None) -> None:
    await AuditLog.raw(
        "INSERT INTO audit_log (tenant, actor, action, target_type, target_id, data, created_at)"
        " VALUES ({}, {}, {}, 'thing', {}, {}::jsonb, {})",
        company.tenant_id,
        actor,
        action,
        uuid.uuid4(),
        '{"k": 1}',
        at,
    )


async def _channel(company: Company) -> uuid.UUID:
    rows = await AuditLog.raw(
        "INSERT INTO channels (tenant, type, name) VALUES ({}, 'fake', 'WA') RETURNING id",
        company.tenant_id,
    )
    return rows[0]["id"]


async def _usage(company: Company, channel: uuid.UUID, at: dt.datetime, cost: str) -> None:
    await AuditLog.raw(
        "INSERT INTO provider_usage (tenant, channel, provider_message_id, pricing_model,"
        " category, billable, cost, created_at)"
        " VALUES ({}, {}, {}, 'PMP', 'marketing', true, {}::numeric, {})",
        company.tenant_id,
        channel,
        f"wamid.{uuid.uuid4().hex}",
        cost,
        at,
    )


async def _walk(client: Any, url: str, headers: dict[str, str], **params: Any) -> list[dict]:
    """Every item across the pages, asserting the cursor ends."""
    items: list[dict] = []
    cursor = None
    for _ in range(50):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = await client.get(url, params=query, headers=headers)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


async def test_audit_is_listed_newest_first_filtered_and_paginated(
    client, make_company, auth_headers
):
    company, other = await make_company(), await make_company()
    admin = await company.add("admin")
    for hours in range(5):
        await _audit(company, "thing.update", T0 + dt.timedelta(hours=hours), admin.user_id)
    await _audit(company, "thing.delete", T0 + dt.timedelta(hours=10), company.owner.user_id)
    await _audit(other, "thing.update", T0, other.owner.user_id)
    headers = await auth_headers(admin)

    updates = await _walk(client, "/api/v1/audit", headers, action="thing.update", limit=2)
    assert [dt.datetime.fromisoformat(e["created_at"]) for e in updates] == [
        T0 + dt.timedelta(hours=h) for h in (4, 3, 2, 1, 0)
    ]
    assert len({e["id"] for e in updates}) == 5
    assert all(e["actor_id"] == str(admin.user_id) for e in updates)
    assert updates[0]["actor_name"] == "Admin" and updates[0]["data"] == {"k": 1}

    by_owner = await _walk(client, "/api/v1/audit", headers, actor_id=str(company.owner.user_id))
    assert [e["action"] for e in by_owner if e["action"].startswith("thing.")] == ["thing.delete"]

    period = await _walk(
        client,
        "/api/v1/audit",
        headers,
        since=(T0 + dt.timedelta(hours=1)).isoformat(),
        until=(T0 + dt.timedelta(hours=3)).isoformat(),
    )
    assert len(period) == 2  # hours 1 and 2: since inclusive, until exclusive

    everything = await _walk(client, "/api/v1/audit", headers)
    assert all(e["actor_id"] != str(other.owner.user_id) for e in everything)
    assert sum(e["action"].startswith("thing.") for e in everything) == 6


@pytest.mark.parametrize("role", ["supervisor", "agent", "viewer"])
async def test_only_admins_read_the_audit_and_usage(client, company, auth_headers, role):
    headers = await auth_headers(await company.add(role))
    for url in ("/api/v1/audit", "/api/v1/provider-usage"):
        resp = await client.get(url, headers=headers)
        assert resp.status == 403, await resp.text()
        assert (await resp.json())["error"]["code"] == "permission_denied"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"cursor": "not-a-cursor"}, 400),
        ({"since": "2026-01-01T00:00:00"}, 422),  # no time zone
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422),
        ({"actor_id": "nope"}, 422),
        ({"limit": "0"}, 422),
    ],
)
async def test_bad_filters_are_clear_errors(client, company, params, status):
    headers = await login(client, company.owner)
    for url in ("/api/v1/audit", "/api/v1/provider-usage"):
        if url.endswith("usage") and "actor_id" in params:
            continue
        resp = await client.get(url, params=params, headers=headers)
        assert resp.status == status, await resp.text()


async def test_an_audit_cursor_from_a_uuid_keyed_list_is_refused(client, company):
    headers = await login(client, company.owner)
    channel = await _channel(company)
    for hours in range(3):
        await _usage(company, channel, T0 + dt.timedelta(hours=hours), "0.01")
    page = await (
        await client.get("/api/v1/provider-usage", params={"limit": 1}, headers=headers)
    ).json()
    resp = await client.get(
        "/api/v1/audit", params={"cursor": page["next_cursor"]}, headers=headers
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_cursor"


async def test_provider_usage_rows_by_channel_and_period(client, make_company):
    company, other = await make_company(), await make_company()
    first, second = await _channel(company), await _channel(company)
    for hours in range(4):
        await _usage(company, first, T0 + dt.timedelta(hours=hours), "0.0625")
    await _usage(company, second, T0, "0.5")
    await _usage(other, await _channel(other), T0, "9.99")
    headers = await login(client, company.owner)

    rows = await _walk(client, "/api/v1/provider-usage", headers, limit=3)
    assert len(rows) == 5
    assert {r["channel_id"] for r in rows} == {str(first), str(second)}
    assert "9.99" not in {r["cost"] for r in rows}

    only_first = await _walk(
        client,
        "/api/v1/provider-usage",
        headers,
        channel_id=str(first),
        since=(T0 + dt.timedelta(hours=2)).isoformat(),
    )
    assert len(only_first) == 2
    assert {r["cost"] for r in only_first} == {"0.062500"}
    assert only_first[0]["category"] == "marketing" and only_first[0]["billable"] is True

    foreign = await _walk(client, "/api/v1/provider-usage", headers, channel_id=str(uuid.uuid4()))
    assert foreign == []
