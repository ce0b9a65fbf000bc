"""Fixtures for the meta_cloud plugin: Meta's payload fixtures, a fake Graph API behind
httpx.MockTransport (swapped into the running app's pooled client), and channels created
through the real channels API."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from guiche.models import Channel, TenantPlugin
from guiche.runtime.services import SERVICES, Services
from tests.conftest import FIXTURES_DIR, Company, login

META = Path(FIXTURES_DIR) / "meta"
APP_SECRET = "3f1c9a7e5b2d4c6e8a0f1b3d5c7e9a1b"  # the secret of signature_vectors.json
VERIFY_TOKEN = "verify-me-please"
FIXTURE_PHONE_ID = "301234567890123"
FIXTURE_WABA_ID = "102938475610293"
TOKEN = "EAAG-test-token"

_SEQUENCE = itertools.count(1)


def fixture_bytes(name: str) -> bytes:
    return (META / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    return json.loads(fixture_bytes(name))


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def unique_phone_id() -> str:
    """A phone_number_id no other test uses (the session database is shared)."""
    return f"39{secrets.randbelow(10**13):013d}"


def now_ts() -> str:
    return str(int(dt.datetime.now(dt.UTC).timestamp()))


def rewrite(body: bytes, **replacements: str) -> bytes:
    """Swap literal values in a fixture body (ids, timestamps) keeping its bytes otherwise."""
    text = body.decode()
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text.encode()


def with_timestamps(body: bytes, ts: str) -> bytes:
    return re.sub(rb'"timestamp": "\d+"', f'"timestamp": "{ts}"'.encode(), body)


def config(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "phone_number_id": FIXTURE_PHONE_ID,
        "waba_id": FIXTURE_WABA_ID,
        "access_token": TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "graph_base_url": "https://graph.test",
    }
    values.update(overrides)
    return values


@dataclass
class FakeGraph:
    """Meta's Graph API as an httpx MockTransport handler: records calls, scripts answers.

    Sends answer with a fresh wamid; `fail_next(status, body)` queues error answers for
    the next send; media ids in `media` are downloadable; `template_pages` are served by
    cursor (`after`).
    """

    requests: list[httpx.Request] = field(default_factory=list)
    failures: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    template_pages: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    sent_wamids: list[str] = field(default_factory=list)

    def fail_next(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.failures.append((status, body, headers or {}))

    def sends(self) -> list[dict[str, Any]]:
        return [
            json.loads(r.content)
            for r in self.requests
            if r.method == "POST" and r.url.path.endswith("/messages")
        ]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, content=fixture_bytes("error_190.json"))
        if request.method == "POST" and path.endswith("/messages"):
            if self.failures:
                status, body, headers = self.failures.pop(0)
                return httpx.Response(status, content=body, headers=headers)
            wamid = f"wamid.TEST{next(_SEQUENCE):06d}{uuid.uuid4().hex[:8]}"
            self.sent_wamids.append(wamid)
            to = json.loads(request.content).get("to")
            return httpx.Response(
                200,
                json={
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": wamid}],
                },
            )
        if request.method == "POST" and path.endswith("/media"):
            return httpx.Response(200, json={"id": "990011223344"})
        if path.endswith("/message_templates"):
            page = self.template_pages.get(request.url.params.get("after"))
            return httpx.Response(200, json=page or {"data": []})
        if request.url.host == "lookaside.test":
            media_id = request.url.params.get("mid", "")
            data, mime = self.media[media_id]
            return httpx.Response(200, content=data, headers={"content-type": mime})
        media_id = path.rsplit("/", 1)[-1]
        if request.method == "GET" and media_id in self.media:
            data, mime = self.media[media_id]
            return httpx.Response(
                200,
                json={
                    "messaging_product": "whatsapp",
                    "url": f"https://lookaside.test/attachments/?mid={media_id}",
                    "mime_type": mime,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "file_size": len(data),
                    "id": media_id,
                },
            )
        if request.method == "GET":  # e.g. GET /{phone_number_id} from setup()
            return httpx.Response(200, json={"id": media_id, "display_phone_number": "5511"})
        return httpx.Response(404, content=fixture_bytes("error_100.json"))

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


def services_of_client(client: Any) -> Services:
    return client.server.app[SERVICES]


@pytest.fixture
async def client(make_client: Any, graph: FakeGraph, tmp_path: Path) -> Any:
    """The real app (meta_cloud installed by entry point) with the fake Graph as its
    pooled HTTP client, immediate send retries and media under tmp_path."""
    app_client = await make_client(
        send_retry_base_seconds=0.0,
        send_retry_max_seconds=0.0,
        storage_path=str(tmp_path / "media"),
    )
    services = services_of_client(app_client)
    if services.http is not None:
        await services.http.aclose()
    services.http = graph.client()
    return app_client


async def settle(client: Any) -> None:
    """Wait until no send task, task kick or plugin hook is still running in-process."""
    services = services_of_client(client)
    broker = services.tasks.broker  # InMemoryBroker: kicks run as tasks in this loop
    while services.background or broker._running_tasks:
        await services.wait_background()
        await broker.wait_all()


async def enable_plugin(tenant_id: uuid.UUID) -> None:
    await TenantPlugin.raw(
        "INSERT INTO tenant_plugins (tenant, plugin, enabled) VALUES ({}, 'meta_cloud', true) "
        "ON CONFLICT (tenant, plugin) DO UPDATE SET enabled = true",
        tenant_id,
    )


MakeChannel = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def make_meta_channel(client: Any) -> MakeChannel:
    """Enable the plugin for the company and create a channel through POST /api/v1/channels."""

    async def make(company: Company, **overrides: Any) -> uuid.UUID:
        await enable_plugin(company.tenant_id)
        headers = await login(client, company.owner)
        resp = await client.post(
            "/api/v1/channels",
            json={
                "type": "meta_cloud",
                "name": "WhatsApp Loja",
                "credentials": config(**overrides),
            },
            headers=headers,
        )
        assert resp.status == 201, await resp.text()
        return uuid.UUID((await resp.json())["id"])

    return make


async def post_channel_webhook(
    client: Any, channel_id: uuid.UUID, body: bytes, *, signature: str | None = None
) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature != "":
        headers["X-Hub-Signature-256"] = signature if signature is not None else sign(body)
    return await client.post(f"/webhooks/meta_cloud/{channel_id}", data=body, headers=headers)


async def deactivate(channel_id: uuid.UUID) -> None:
    await Channel.update({Channel.is_active: False}).where(Channel.id == channel_id)
