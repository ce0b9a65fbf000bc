"""Operations: health and readiness, metrics, request ids and access logs, security headers,
CORS, and body size limits, all through the real app over HTTP."""

from __future__ import annotations

import datetime as dt
import logging
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.asyncio import Redis

from guiche.app import create_app
from guiche.foundation.logs import (
    HumanFormatter,
    JsonFormatter,
    bound_context,
    configure_logging,
    log_context,
)
from guiche.runtime.services import SERVICES
from tests.conftest import login

CONTACT = "/api/v1/contacts/{id}"
ORIGIN = "https://app.example"


async def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == code, body
    return body["error"]


# --- health and readiness -----------------------------------------------------------------


async def test_health_is_liveness_only(client: Any) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_ready_checks_the_database_and_names_the_storage(client: Any) -> None:
    resp = await client.get("/health/ready")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert "redis" not in body["checks"]  # not configured, not checked
    assert body["storage"] in ("postgres", "timescaledb")


async def test_ready_checks_redis_when_configured(make_client: Any, require_redis: str) -> None:
    client = await make_client(redis_url=require_redis)
    resp = await client.get("/health/ready")
    assert resp.status == 200
    checks = (await resp.json())["checks"]
    assert checks["redis"]["status"] == "ok"
    assert checks["database"]["status"] == "ok"


async def test_ready_answers_503_naming_what_failed(client: Any) -> None:
    services = client.app[SERVICES]
    services.redis = Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    error = await _error(await client.get("/health/ready"), 503, "not_ready")
    assert "redis" in error["message"]
    assert error["details"]["failed"] == ["redis"]
    assert error["details"]["checks"]["database"]["status"] == "ok"
    assert error["details"]["checks"]["redis"]["status"] == "error"
    assert error["details"]["storage"] in ("postgres", "timescaledb")
    assert (await client.get("/health")).status == 200  # liveness does not care


# --- metrics -----------------------------------------------------------------------------


async def test_metrics_label_requests_by_route_template(client: Any) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    for contact_id in ids:
        assert (await client.get(f"/api/v1/contacts/{contact_id}")).status == 401
    assert (await client.get(f"/no/such/{uuid.uuid4()}")).status == 404
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    assert f'guiche_http_requests_total{{method="GET",route="{CONTACT}",status="401"}} 3.0' in text
    assert 'guiche_http_requests_total{method="GET",route="<unmatched>",status="404"}' in text
    assert f'guiche_http_request_duration_seconds_count{{method="GET",route="{CONTACT}"}}' in text
    assert not any(str(contact_id) in text for contact_id in ids)  # never the raw path
    assert "guiche_plugin_hook_failures" in text  # the default registry too
    assert "python_info" in text


async def test_each_app_counts_its_own_requests(make_client: Any) -> None:
    first, second = await make_client(), await make_client()
    await first.get("/health")
    line = 'guiche_http_requests_total{method="GET",route="/health",status="200"}'
    assert f"{line} 1.0" in await (await first.get("/metrics")).text()
    assert line not in await (await second.get("/metrics")).text()


# --- request ids and logs ----------------------------------------------------------------


async def test_request_id_is_echoed_or_made(client: Any) -> None:
    resp = await client.get("/health", headers={"X-Request-ID": "abc-123.def"})
    assert resp.headers["X-Request-ID"] == "abc-123.def"
    for bad in ("has spaces", "x" * 200, "new\\nline"):
        resp = await client.get("/health", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])
    resp = await client.get("/api/v1/contacts")  # an error answer carries it too
    assert resp.status == 401
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))


@pytest.fixture
def access_lines() -> Iterator[list[dict[str, Any]]]:
    logger = logging.getLogger("guiche.access")
    handler = _Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_one_json_access_line_per_request_with_tenant_and_user(
    client: Any, company: Any, access_lines: list[dict[str, Any]]
) -> None:
    headers = await login(client, company.owner)
    access_lines.clear()
    resp = await client.get("/api/v1/auth/me", headers={**headers, "X-Request-ID": "req-42"})
    assert resp.status == 200
    (line,) = access_lines
    assert line["logger"] == "guiche.access"
    assert line["level"] == "INFO"
    assert line["method"] == "GET"
    assert line["path"] == line["route"] == "/api/v1/auth/me"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["request_id"] == "req-42"
    assert line["tenant"] == str(company.tenant_id)
    assert line["user"] == str(company.owner.user_id)

    access_lines.clear()
    await client.get(f"/api/v1/contacts/{uuid.uuid4()}")
    (anonymous,) = access_lines
    assert anonymous["route"] == CONTACT
    assert anonymous["status"] == 401
    assert "tenant" not in anonymous and "user" not in anonymous


def test_json_formatter_carries_context_and_extras() -> None:
    record = logging.LogRecord("guiche.test", logging.WARNING, __file__, 1, "hi %s", ("you",), None)
    record.channel_id = uuid.UUID(int=7)  # an `extra=` field, not JSON-native
    with bound_context(request_id="r1", resolver=lambda: {"tenant": "t1", "user": None}):
        assert log_context() == {"request_id": "r1", "tenant": "t1"}
        entry = orjson.loads(JsonFormatter().format(record))
        human = HumanFormatter().format(record)
    assert log_context() == {}  # unbound on exit
    assert entry["msg"] == "hi you"
    assert entry["level"] == "WARNING"
    assert entry["request_id"] == "r1" and entry["tenant"] == "t1"
    assert "user" not in entry
    assert entry["channel_id"] == str(uuid.UUID(int=7))
    assert "hi you" in human and "request_id=r1" in human and "tenant=t1" in human


def test_configure_logging_installs_one_handler() -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        configure_logging("DEBUG", json=False)
        configure_logging("WARNING", json=True)
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1
        assert isinstance(ours[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)


def test_log_output_goes_to_stderr_stream(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        configure_logging("INFO", json=True)
        logging.getLogger("guiche.test").info("hello", extra={"n": 1})
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = orjson.loads(line)
    assert entry["msg"] == "hello" and entry["n"] == 1 and entry["logger"] == "guiche.test"


@pytest.mark.parametrize(
    ("setting", "terminal", "json_expected"),
    [
        (None, True, False),  # GUICHE_LOG_JSON unset, a person's terminal: human lines
        (None, False, True),  # unset, a pipe or a file (service, container): JSON
        (True, True, True),  # asked for JSON: JSON even on a terminal
        (False, False, False),
    ],
)
def test_log_format_follows_the_setting_else_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    setting: bool | None,
    terminal: bool,
    json_expected: bool,
) -> None:
    import os

    if terminal:
        master, slave = os.openpty()
        stream = os.fdopen(slave, "w", buffering=1)
    else:
        master, stream = None, (tmp_path / "stderr.log").open("w", buffering=1)
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        configure_logging("INFO", setting)
        logging.getLogger("guiche.test").info("hello", extra={"n": 1})
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)
        stream.close()
    if master is not None:
        line = os.read(master, 65536).decode().strip()
        os.close(master)
    else:
        line = (tmp_path / "stderr.log").read_text().strip()
    if json_expected:
        assert orjson.loads(line)["msg"] == "hello"
    else:
        assert re.fullmatch(r"\S+ \S+ INFO +guiche\.test hello n=1", line), line


# --- security headers --------------------------------------------------------------------


async def test_security_headers_on_api_and_error_responses(client: Any) -> None:
    for path, status in (("/api/v1/contacts", 401), ("/api/v1/nope", 404)):
        resp = await client.get(path)
        assert resp.status == status
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert resp.headers["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in resp.headers  # plain http
    health = await client.get("/health")
    assert health.headers["X-Content-Type-Options"] == "nosniff"
    assert "Cache-Control" not in health.headers  # not an /api/ response


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@pytest.fixture
async def https_client(
    aiohttp_client: Any, make_settings: Any, tmp_path: Path
) -> AsyncIterator[Any]:
    server = TestServer(create_app(make_settings()))
    await server.start_server(ssl=_self_signed(tmp_path))  # the client's start is then a no-op
    yield await aiohttp_client(server, connector=aiohttp.TCPConnector(ssl=False))


async def test_hsts_only_over_https(https_client: Any) -> None:
    resp = await https_client.get("/api/v1/contacts")
    assert resp.status == 401
    assert resp.url.scheme == "https"
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


# --- CORS --------------------------------------------------------------------------------


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }


async def test_cors_preflight_for_an_allowed_origin(make_client: Any) -> None:
    client = await make_client(cors_origins=[ORIGIN])
    resp = await client.options("/api/v1/contacts", headers=_preflight(ORIGIN))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-api-key", "idempotency-key", "x-request-id"} <= (
        allowed
    )
    assert "Origin" in resp.headers["Vary"]


async def test_cors_disallowed_origin_gets_no_cors_headers(make_client: Any) -> None:
    client = await make_client(cors_origins=[ORIGIN])
    evil = "https://evil.example"
    resp = await client.options("/api/v1/contacts", headers=_preflight(evil))
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.get("/api/v1/contacts", headers={"Origin": evil})
    assert resp.status == 401
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "Origin" in resp.headers["Vary"]


async def test_cors_headers_on_actual_responses_including_errors(make_client: Any) -> None:
    client = await make_client(cors_origins=[ORIGIN, "https://other.example"])
    resp = await client.get("/api/v1/contacts", headers={"Origin": ORIGIN})
    await _error(resp, 401, "not_authenticated")
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Request-ID" in resp.headers["Access-Control-Expose-Headers"]
    assert resp.headers["Vary"] == "Origin"


async def test_cors_wildcard_and_unconfigured(make_client: Any) -> None:
    anyone = await make_client(cors_origins=["*"])
    resp = await anyone.get("/health", headers={"Origin": "https://whoever.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await anyone.options("/api/v1/contacts", headers=_preflight("https://x.example"))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"

    closed = await make_client()
    resp = await closed.get("/health", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in resp.headers


# --- body limits -------------------------------------------------------------------------


async def test_oversize_body_is_refused_before_it_is_read(make_client: Any) -> None:
    client = await make_client(max_body_bytes=1024)
    big = orjson.dumps({"email": "a@example.test", "password": "x" * 2000})
    resp = await client.post(
        "/api/v1/auth/login", data=big, headers={"Content-Type": "application/json"}
    )
    error = await _error(resp, 413, "payload_too_large")
    assert error["details"]["max_bytes"] == 1024
    # Refused on the declared length, ahead of authentication and the handler.
    resp = await client.post(f"/api/v1/contacts/{uuid.uuid4()}", data=big)
    await _error(resp, 413, "payload_too_large")


async def test_oversize_body_without_a_length_is_cut_off_while_read(make_client: Any) -> None:
    client = await make_client(max_body_bytes=1024)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.test", "password": "'
        for _ in range(4):
            yield b"x" * 512
        yield b'"}'

    resp = await client.post(
        "/api/v1/auth/login", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
    await _error(resp, 413, "payload_too_large")


async def test_a_body_within_the_limit_is_served(make_client: Any, company: Any) -> None:
    client = await make_client(max_body_bytes=1024)
    resp = await client.post(
        "/api/v1/auth/login",
        json={"email": company.owner.email, "password": company.owner.password},
    )
    assert resp.status == 200
