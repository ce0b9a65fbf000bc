"""The per-channel provider call log: every call an adapter makes through `services.http`
is recorded under the channel (operation, status, latency, error), read by admins through
`GET /api/v1/channels/{id}/calls`, scoped to the company, and trimmed after retention.

The channel is the example Telegram plugin; the Bot API is a MockTransport behind the
real recording client (only the outside world is fake).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import orjson
import pytest

from guiche.models import TenantPlugin
from guiche.outbound.sweeper import purge_provider_calls
from guiche.provider_http.call_log import (
    CallRecorder,
    provider_call,
    redacted_target,
)
from guiche.provider_http.client import outbound_client
from guiche.runtime.services import SERVICES
from tests.conftest import login
from tests.core.conversations.conftest import fetch
from tests.plugins.telegram.test_telegram import (
    SECRET_HEADER,
    TOKEN,
    FakeTelegram,
    channel_secret,
    settle,
    text,
    update,
)


@pytest.fixture
def fake() -> FakeTelegram:
    return FakeTelegram()


@pytest.fixture
async def client(make_client: Any, fake: FakeTelegram, tmp_path: Any) -> Any:
    app = await make_client(
        public_url="https://chat.example.com",
        storage_path=str(tmp_path / "media"),
        send_retry_base_seconds=0.0,
        send_retry_max_seconds=0.0,
    )
    services = app.server.app[SERVICES]
    await services.http.aclose()
    services.http = outbound_client(
        recorder=services.call_log, transport=httpx.MockTransport(fake.handler)
    )
    return app


async def _telegram_channel(client: Any, company: Any) -> tuple[str, dict[str, str]]:
    await TenantPlugin.insert(
        TenantPlugin(tenant=company.tenant_id, plugin="telegram", enabled=True, settings={})
    )
    headers = await login(client, company.owner)
    resp = await client.post(
        "/api/v1/channels",
        json={
            "type": "telegram",
            "name": "Bot",
            "credentials": {"bot_token": TOKEN},
        },
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"], headers


async def _conversation(client: Any, channel_id: str) -> uuid.UUID:
    resp = await client.post(
        f"/webhooks/telegram/{channel_id}",
        data=orjson.dumps(update(text())),
        headers={
            SECRET_HEADER: channel_secret(client, channel_id),
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 200, await resp.text()
    [row] = await fetch(
        "SELECT conversation FROM messages WHERE channel = {}", uuid.UUID(channel_id)
    )
    return row["conversation"]


async def _calls(client: Any, channel_id: str, headers: dict[str, str], query: str = "") -> Any:
    await client.server.app[SERVICES].call_log.flush()
    resp = await client.get(f"/api/v1/channels/{channel_id}/calls{query}", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_sends_and_provisioning_are_logged_per_channel(
    client: Any, fake: FakeTelegram, make_company: Any
) -> None:
    company = await make_company()
    channel_id, headers = await _telegram_channel(client, company)
    conversation = await _conversation(client, channel_id)
    fake.failures.append((502, {"description": "Bad Gateway"}))  # first attempt fails
    resp = await client.post(
        f"/api/v1/conversations/{conversation}/messages",
        json={"type": "text", "text": "Olá!"},
        headers=headers,
    )
    assert resp.status == 202, await resp.text()
    await settle(client)

    page = await _calls(client, channel_id, headers)
    calls = page["items"]
    # newest first: the retried send, the failed send, the webhook registration
    assert [(c["operation"], c["status"]) for c in calls] == [
        ("send", 200),
        ("send", 502),
        ("provision", 200),
    ]
    assert calls[1]["error"] and "Bad Gateway" in calls[1]["error"]
    assert calls[0]["error"] is None
    assert all(c["method"] == "POST" and c["latency_ms"] >= 0 for c in calls)
    assert calls[2]["target"] == "api.telegram.org/bot***/setWebhook"
    assert not any(TOKEN in c["target"] or "ABC-DEF" in c["target"] for c in calls)

    failed = await _calls(client, channel_id, headers, "?failed=true")
    assert [c["status"] for c in failed["items"]] == [502]
    provision = await _calls(client, channel_id, headers, "?operation=provision")
    assert [c["operation"] for c in provision["items"]] == ["provision"]
    first = await _calls(client, channel_id, headers, "?limit=1")
    assert len(first["items"]) == 1 and first["next_cursor"]
    rest = await _calls(client, channel_id, headers, f"?limit=5&cursor={first['next_cursor']}")
    assert [c["status"] for c in rest["items"]] == [502, 200]


async def test_a_call_that_never_answered_is_logged_with_its_error(
    client: Any, make_company: Any
) -> None:
    company = await make_company()
    channel_id, headers = await _telegram_channel(client, company)
    services = client.server.app[SERVICES]

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    await services.http.aclose()
    services.http = outbound_client(
        recorder=services.call_log, transport=httpx.MockTransport(refuse)
    )
    with provider_call(company.tenant_id, uuid.UUID(channel_id), "qr_code"):
        with pytest.raises(httpx.ConnectError):
            await services.http.get("https://api.telegram.org/bot1:secret/getMe")
    page = await _calls(client, channel_id, headers, "?failed=true")
    [call] = page["items"]
    assert call["operation"] == "qr_code" and call["status"] is None
    assert call["error"] == "ConnectError: connection refused"


async def test_the_log_is_for_the_companys_admins_only(client: Any, make_company: Any) -> None:
    company = await make_company()
    channel_id, headers = await _telegram_channel(client, company)
    other = await make_company()
    other_headers = await login(client, other.owner)
    resp = await client.get(f"/api/v1/channels/{channel_id}/calls", headers=other_headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    agent = await company.add("agent")
    resp = await client.get(
        f"/api/v1/channels/{channel_id}/calls", headers=await login(client, agent)
    )
    assert resp.status == 403
    # a row written under another company's id for this channel is never stored
    recorder = client.server.app[SERVICES].call_log
    with provider_call(other.tenant_id, uuid.UUID(channel_id), "send"):
        recorder.observe(
            httpx.Request("POST", "https://example.com/x"),
            started=dt.datetime.now(dt.UTC),
            elapsed=0.01,
            response=httpx.Response(200),
        )
    page = await _calls(client, channel_id, headers)
    assert [c["operation"] for c in page["items"]] == ["provision"]


async def test_calls_outside_a_channel_scope_are_not_logged(client: Any) -> None:
    services = client.server.app[SERVICES]
    before = services.call_log.written
    services.call_log.observe(
        httpx.Request("GET", "https://example.com/"),
        started=dt.datetime.now(dt.UTC),
        elapsed=0.0,
        response=httpx.Response(204),
    )
    assert await services.call_log.flush() == 0
    assert services.call_log.written == before


async def test_retention_purges_old_calls_only(
    client: Any, make_company: Any, make_settings: Any
) -> None:
    company = await make_company()
    channel_id, headers = await _telegram_channel(client, company)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    await fetch(
        "INSERT INTO provider_calls (tenant, channel, created_at, operation, method, target,"
        " latency_ms) VALUES ({}, {}, {}, 'send', 'POST', 'x/y', 1) RETURNING id",
        company.tenant_id,
        uuid.UUID(channel_id),
        old,
    )
    services = client.server.app[SERVICES]
    await services.call_log.flush()
    assert await purge_provider_calls(services=services) >= 1
    page = await _calls(client, channel_id, headers)
    assert [c["operation"] for c in page["items"]] == ["provision"]


def test_targets_keep_ids_and_mask_secrets() -> None:
    cases = {
        "https://api.telegram.org/bot123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11/sendMessage?x=1": (
            "api.telegram.org/bot***/sendMessage"
        ),
        "https://graph.facebook.com/v21.0/106540352242922/messages": (
            "graph.facebook.com/v21.0/106540352242922/messages"
        ),
        "https://evo.example.com/message/sendText/loja-1": (
            "evo.example.com/message/sendText/loja-1"
        ),
        "https://x.example/c/0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b/k": (
            "x.example/c/0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b/k"
        ),
        "https://x.example/key/sk_live_4eC39HqLyjWDarjtT1zdp7dc/run": "x.example/key/***/run",
    }
    for url, expected in cases.items():
        assert redacted_target(httpx.URL(url)) == expected


async def test_a_full_buffer_drops_the_oldest_and_counts_them() -> None:
    recorder = CallRecorder(db=None, buffer_size=2)  # type: ignore[arg-type]
    with provider_call(uuid.uuid4(), uuid.uuid4(), "send"):
        for _ in range(3):
            recorder.observe(
                httpx.Request("POST", "https://example.com/"),
                started=dt.datetime.now(dt.UTC),
                elapsed=0.0,
                response=httpx.Response(200),
            )
    assert recorder.dropped == 1
    assert len(recorder._buffer) == 2


def test_core_generates_a_stable_secret_per_channel() -> None:
    from guiche.foundation.crypto import webhook_secret

    one, two = uuid.uuid4(), uuid.uuid4()
    secret = webhook_secret("k" * 40, one)
    assert secret == webhook_secret("k" * 40, one)  # nothing to store
    assert secret != webhook_secret("k" * 40, two)
    assert secret != webhook_secret("other" * 8, one)
    assert len(secret) == 43 and secret.replace("-", "").replace("_", "").isalnum()
    assert webhook_secret(None, one) == ""
