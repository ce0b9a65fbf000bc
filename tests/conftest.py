"""Shared fixtures: a real Postgres database per test session, a real Redis when configured,
the app served by a real aiohttp test server, and factories for companies and people.

Tests isolate by creating their own companies and users (unique names), so they run in
any order and in parallel (each xdist worker gets its own database).
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from argon2 import PasswordHasher
from cryptography.fernet import Fernet

from guiche.auth.passwords import use_hasher
from guiche.foundation.config import Settings

# Cheap argon2id parameters: the suite logs in hundreds of times (production keeps defaults).
use_hasher(PasswordHasher(time_cost=1, memory_cost=2048, parallelism=1))

FIXTURES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
"""Provider payload bodies the plugin tests read (tests/fixtures/README.md says what each is)."""


def _server_url() -> tuple[str, Any]:
    """A Postgres server URL: DATABASE_URL when set, else an embedded pgserver."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, None
    import tempfile

    import pgserver

    data = tempfile.mkdtemp(prefix="guiche-test-pg-")
    server = pgserver.get_server(data, cleanup_mode="delete")
    return server.get_uri(), server


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name`, keeping its query (`?host=<socket dir>` for the
    embedded server): cutting the query would point at a server that is not ours."""
    path, sep, query = url.partition("?")
    base, _, _ = path.rpartition("/")
    return f"{base}/{name}{sep}{query}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    import asyncio

    from guiche.database.migrate import migrate

    server_url, server = _server_url()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"guiche_test_{worker}_{secrets.token_hex(3)}"

    async def setup() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def teardown() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(setup())
    url = with_database(server_url, name)
    asyncio.run(migrate(url))
    yield url
    asyncio.run(teardown())
    if server is not None:
        server.cleanup()


@pytest.fixture(scope="session")
def timescale_missing(database_url: str) -> str | None:
    """Why `messages` is not a hypertable on the test database (None when it is)."""
    import asyncio

    from guiche.database import timescale

    async def check() -> str | None:
        conn = await asyncpg.connect(database_url)
        try:
            if await timescale.is_hypertable(conn):
                return None
            return (await timescale.server_decision(conn)).reason
        finally:
            await conn.close()

    return asyncio.run(check())


@pytest.fixture(autouse=True)
def _timescale_marker(request: pytest.FixtureRequest) -> None:
    """`@pytest.mark.timescale` tests run where DATABASE_URL's server has TimescaleDB."""
    if request.node.get_closest_marker("timescale") is not None:
        missing = request.getfixturevalue("timescale_missing")
        if missing:
            pytest.skip(f"needs TimescaleDB: {missing}")


@pytest.fixture(scope="session")
def redis_url() -> str | None:
    return os.environ.get("REDIS_URL") or None


@pytest.fixture
def require_redis(redis_url: str | None) -> str:
    if not redis_url:
        pytest.skip("REDIS_URL is not set: Redis-backed path not exercised")
    return redis_url


@contextmanager
def published_events(bus: Any) -> Iterator[list[Any]]:
    """The events `bus` delivers in this process while the block runs, in order."""
    seen: list[Any] = []
    unsubscribe = bus.subscribe(seen.append)
    try:
        yield seen
    finally:
        unsubscribe()


async def pool_plan_cache_modes(pool: Any) -> set[str]:
    """`plan_cache_mode` of every connection of the pool (all held at once, so none is
    missed): a transaction's own setting must not go back to the pool with it."""
    held = [await pool.acquire() for _ in range(pool.get_size())]
    try:
        return {await conn.fetchval("SHOW plan_cache_mode") for conn in held}
    finally:
        for conn in held:
            await pool.release(conn)


async def drop_task_queue(redis_url: str, queue: str) -> None:
    """Remove a test's own task stream from Redis: its keys and the broker's autoclaim key."""
    from redis.asyncio import Redis

    from guiche.tasks import broker

    redis = Redis.from_url(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{queue}*")]
        keys.append(f"autoclaim:{broker.CONSUMER_GROUP}:{queue}")
        await redis.delete(*keys)
    finally:
        await redis.aclose()


@pytest.fixture(scope="session")
def encryption_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def make_settings(database_url: str, encryption_key: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": None,
            "secret_key": "test-secret-key-" + "x" * 32,
            "encryption_keys": [encryption_key],
            "rate_limit_per_minute": 0,
            # every test client is 127.0.0.1: a per-IP login limit would couple unrelated tests
            "login_max_attempts_per_ip": 1_000_000,
            "log_json": False,
            "data_dir": "/tmp/guiche-test",
            # in-process workers and commands must not freeze the test process's objects
            # (frozen cyclic garbage is never reclaimed); the threshold still applies
            "gc_freeze": False,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def make_client(aiohttp_client: Any, make_settings: Callable[..., Settings]) -> Any:
    """Build the real app (with optional settings overrides and in-process plugins) and serve it."""
    from guiche.app import create_app

    async def make(extra_plugins: tuple[tuple[str, Any], ...] = (), **overrides: Any) -> Any:
        app = create_app(make_settings(**overrides), extra_plugins=extra_plugins)
        return await aiohttp_client(app)

    return make


@pytest.fixture
async def client(make_client: Any) -> Any:
    return await make_client()


@dataclass
class Member:
    user_id: uuid.UUID
    email: str
    password: str
    role: str
    tenant_id: uuid.UUID


@dataclass
class Company:
    tenant_id: uuid.UUID
    slug: str
    owner: Member

    async def add(self, role: str, *, max_chats: int = 5) -> Member:
        from guiche.companies.accounts import add_member, find_or_create_user

        email = f"{role}-{uuid.uuid4().hex[:10]}@example.test"
        password = "pw-" + secrets.token_urlsafe(12)
        user_id = await find_or_create_user(email, role.title(), password)
        await add_member(self.tenant_id, user_id, role, max_concurrent_chats=max_chats)
        return Member(user_id, email, password, role, self.tenant_id)


@pytest.fixture
async def make_company(client: Any) -> Callable[..., Any]:
    """Create a company with an owner (the app must be running so tables are bound)."""
    from guiche.companies.accounts import create_tenant

    async def make(name: str | None = None) -> Company:
        name = name or f"Loja {uuid.uuid4().hex[:8]}"
        email = f"owner-{uuid.uuid4().hex[:10]}@example.test"
        password = "pw-" + secrets.token_urlsafe(12)
        created = await create_tenant(name, email, password, owner_name="Owner")
        owner = Member(created.owner_id, email, password, "owner", created.tenant_id)
        return Company(created.tenant_id, created.slug, owner)

    return make


async def login(client: Any, member: Member) -> dict[str, str]:
    """Authorization headers for a member, through the real login endpoint."""
    resp = await client.post(
        "/api/v1/auth/login", json={"email": member.email, "password": member.password}
    )
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    return {"Authorization": f"Bearer {data['access_token']}"}


@pytest.fixture
def auth_headers(client: Any) -> Callable[[Member], Any]:
    async def headers(member: Member) -> dict[str, str]:
        return await login(client, member)

    return headers


@pytest.fixture
async def company(make_company: Callable[..., Any]) -> AsyncIterator[Company]:
    yield await make_company()
