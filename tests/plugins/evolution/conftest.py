"""Fixtures for the Evolution plugin: the shared payload fixtures, webhook requests signed
with a channel's secret, adapters on an httpx MockTransport, and a fake Evolution server."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from guiche_evolution.adapter import SECRET_HEADER, EvolutionAdapter
from guiche_evolution.config import EvolutionConfig
from guiche_evolution.netpolicy import ALLOW_PRIVATE_ENV

from guiche.channels import ChannelInfo, WebhookRequest
from guiche.foundation.config import Settings
from tests.conftest import FIXTURES_DIR

from .fake_evolution import FakeEvolution

EVOLUTION_DIR = Path(FIXTURES_DIR) / "evolution"
#: What the real Evolution API 2.3.6 answered and posted (see its README.md).
REAL_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "evolution" / "real-2.3.6"
SECRET = "test-webhook-secret-0123456789abcdef"
INSTANCE_TOKEN = "6A1F3C9E-2B7D-4E8F-9A0B-1C2D3E4F5A6B"  # the fixtures' body `apikey`
API_KEY = "global-key-0123456789"
INSTANCE = "guiche-loja-centro"
SERVER = "https://evo.example.com"


def fixture_path(name: str) -> Path:
    return EVOLUTION_DIR / name


def load(name: str) -> dict[str, Any]:
    return orjson.loads(fixture_path(name).read_bytes())


def real(name: str, instance: str = INSTANCE) -> Any:
    """A capture from the real server (`{"status", "body"}` for answers, else a webhook
    body), its instances (`cap-a`, `cap-e`) renamed to `instance`."""
    raw = (REAL_DIR / name).read_bytes()
    for captured in (b"cap-a", b"cap-e"):
        raw = raw.replace(captured, instance.encode())
    return orjson.loads(raw)


def real_answer(name: str) -> tuple[int, Any]:
    """(status, body) of a captured answer, for `routes` tables."""
    captured = real(name)
    return captured["status"], captured["body"]


def webhook_fixtures() -> list[str]:
    """Every webhook body (webhook_set_request.json is a request we send, not one we get)."""
    names = sorted(path.name for path in EVOLUTION_DIR.glob("webhook_*.json"))
    return [name for name in names if "event" in load(name)]


def make_config(**overrides: Any) -> EvolutionConfig:
    values: dict[str, Any] = {
        "server_url": SERVER,
        "api_key": API_KEY,
        "instance_name": INSTANCE,
        "webhook_secret": SECRET,
        "instance_token": INSTANCE_TOKEN,
    }
    values.update(overrides)
    return EvolutionConfig.model_validate(values)


def webhook(
    body: bytes | dict[str, Any],
    *,
    secret: str | None = SECRET,
    path: str = "/webhooks/evolution/x",
) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return WebhookRequest(method="POST", path=path, headers=headers, query={}, body=raw)


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def requests_seen() -> list[httpx.Request]:
    return []


@pytest.fixture
def make_adapter(
    requests_seen: list[httpx.Request],
) -> Callable[..., EvolutionAdapter]:
    """An adapter whose HTTP calls go to `handler` (records every request).

    `evolution_state`: what `GET /instance/connectionState` answers (the real 2.3.6
    body), which the adapter asks before sending; those checks are answered here and
    not recorded. None hands them to `handler` like any other call."""
    clients: list[httpx.AsyncClient] = []

    def make(
        handler: Handler | None = None, *, evolution_state: str | None = "open", **config: Any
    ) -> EvolutionAdapter:
        def record(request: httpx.Request) -> httpx.Response:
            if evolution_state is not None and "/instance/connectionState/" in request.url.path:
                body = real("connection_state_open.json")["body"]
                body["instance"].update(instanceName=INSTANCE, state=evolution_state)
                return httpx.Response(200, json=body)
            requests_seen.append(request)
            if handler is None:
                return httpx.Response(404, json={"status": 404})
            return handler(request)

        http = httpx.AsyncClient(transport=httpx.MockTransport(record))
        clients.append(http)
        info = ChannelInfo(
            id=uuid.uuid4(),
            tenant_id=uuid.uuid4(),
            type="evolution",
            name="Loja Centro",
            public_url=Settings().base_url,  # as core builds it: GUICHE_PUBLIC_URL or host
        )
        return EvolutionAdapter(info, make_config(**config), http=http)

    return make


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator setting that lets tests reach fake servers on 127.0.0.1."""
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")


@pytest.fixture
def no_private(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)


@pytest.fixture
async def fake_evolution(aiohttp_server: Any, allow_private: None) -> tuple[FakeEvolution, str]:
    """A running fake Evolution server and its base URL."""
    fake = FakeEvolution()
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("")).rstrip("/")


@pytest.fixture
def public_dns(monkeypatch: pytest.MonkeyPatch, no_private: None) -> dict[str, list[str]]:
    """Name resolution without a network: every name resolves to a public address unless
    the test maps it (the policy check still runs for real)."""
    from guiche_evolution import netpolicy

    table: dict[str, list[str]] = {}
    monkeypatch.setattr(netpolicy, "resolve", lambda host: table.get(host, ["93.184.215.14"]))
    return table
