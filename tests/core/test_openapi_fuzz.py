"""The OpenAPI document and the server agree: generated requests for every operation (valid
and invalid ones) never get a 5xx, nor a status, content type or body the document
does not describe, and invalid input is never accepted.

Generic over the document: every route declared with `@endpoint` (core or plugin) is
covered as it is added. The app runs for real (real Postgres, a real aiohttp server)
in a thread of its own, because schemathesis calls it synchronously over HTTP; the
test authenticates as a company owner. Besides random ids (which mostly find nothing),
operations on `/api/v1/<resource>/{id}` also run against a real row of that resource,
created first through the API, so updates reach the database. The number of examples
per operation is bounded (about a minute in all); `FUZZ_EXAMPLES=200` runs deeper and
`FUZZ_RANDOM=1` explores beyond the fixed, reproducible sequence.

schemathesis' own pytest loader (`from_fixture`) does not run on pytest 9.2, so each
operation's strategy (`APIOperation.as_strategy`) runs under Hypothesis in a subtest.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from guiche.app import create_app
from guiche.foundation.config import Settings
from guiche.http.runner import app_runner
from guiche.web.openapi import OPENAPI_PATH

T = TypeVar("T")

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
PDF = b"%PDF-1.4\n" + b"0" * 64


class ThreadedServer:
    """The app on a real socket, driven by an event loop in its own thread."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = app_runner(app)
        self.url = ""

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.run(site.start())
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        try:
            self.run(self.runner.cleanup())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture
def live_server(make_settings: Callable[..., Settings]) -> Iterator[ThreadedServer]:
    server = ThreadedServer(create_app(make_settings()))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def owner_headers(live_server: ThreadedServer) -> dict[str, str]:
    """A fresh company's owner, logged in through the real endpoint."""
    from guiche.companies.accounts import create_tenant

    email = f"owner-{uuid.uuid4().hex[:10]}@example.test"
    password = "pw-" + secrets.token_urlsafe(12)
    live_server.run(create_tenant(f"Fuzz {uuid.uuid4().hex[:8]}", email, password))
    resp = requests.post(
        f"{live_server.url}/api/v1/auth/login",
        json={"email": email, "password": password},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _seed(url: str, headers: dict[str, str]) -> dict[str, str]:
    """A real row per resource (by its /api/v1/<resource> segment), made through the API.

    A resource whose creation answers otherwise (e.g. a flow that needs a second
    party) is left out: its operations still run with generated ids.
    """
    tag = uuid.uuid4().hex[:8]
    bodies: dict[str, dict[str, Any]] = {
        "departments": {"json": {"name": f"Fuzz {tag}"}},
        "tabulations": {"json": {"name": f"Fuzz {tag}"}},
        "templates": {"json": {"name": f"fuzz_{tag}", "body": "Olá"}},
        "contacts": {"json": {"name": "Fuzz", "phone": "+5531988880000"}},
        "users": {"json": {"email": f"agent-{tag}@example.test", "role": "agent"}},
        "api-keys": {"json": {"name": f"fuzz {tag}"}},
        "media": {"files": {"file": ("a.pdf", PDF, "application/pdf")}},
    }
    ids: dict[str, str] = {}
    for resource, body in bodies.items():
        resp = requests.post(f"{url}/api/v1/{resource}", headers=headers, timeout=30, **body)
        if resp.status_code == 201 and isinstance(resp.json().get("id"), str):
            ids[resource] = resp.json()["id"]
    assert {"departments", "contacts"} <= ids.keys(), ids
    return ids


def _fuzz(operation: APIOperation, strategy: Any, headers: dict[str, str]) -> None:
    """`EXAMPLES` generated requests for one operation, each checked."""
    session = requests.Session()

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not os.environ.get("FUZZ_RANDOM"),
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(session=session, headers=headers, checks=CHECKS, timeout=30)

    try:
        run()
    finally:
        session.close()


def _resource(operation: APIOperation) -> str | None:
    """`contacts` for /api/v1/contacts/{id}/...: the resource an `{id}` names."""
    parts = operation.path.split("/")
    if len(parts) > 4 and parts[:3] == ["", "api", "v1"] and parts[4] == "{id}":
        return parts[3]
    return None


def test_every_operation_answers_as_documented(
    live_server: ThreadedServer, owner_headers: dict[str, str], subtests: pytest.Subtests
) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server.url}{OPENAPI_PATH}")
    schema.config.base_url = live_server.url
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40  # the whole API, not an empty document
    seeded = _seed(live_server.url, owner_headers)
    # Deletions last, so the seeded rows live through every other operation.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    for operation in operations:
        runs = {mode.value: operation.as_strategy(generation_mode=mode) for mode in GenerationMode}
        resource = _resource(operation)
        if resource in seeded:
            runs["existing"] = operation.as_strategy(path_parameters={"id": seeded[resource]})
        for name, strategy in runs.items():
            with subtests.test(operation=operation.label, mode=name):
                _fuzz(operation, strategy, owner_headers)
