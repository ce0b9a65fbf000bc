"""Postgres going away is answered 503 with Retry-After (not 500), and the app recovers.

The app reaches the real test database through a TCP relay the test can cut: cutting it
drops every open connection and refuses new ones, as a Postgres restart or a network
partition does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import pytest

from guiche.database.engine import (
    PooledConnection,
    database_unavailable,
    make_engine,
    start_pool_waiting,
)
from guiche.web.middleware import UNAVAILABLE_RETRY_AFTER
from tests.conftest import login


class Relay:
    """A TCP relay to Postgres that can be cut (connections dropped, new ones refused).

    It runs on an event loop in a thread of its own: creating the app connects once
    synchronously (Piccolo reads the server version while the test's loop waits).
    """

    def __init__(self, host: str, port: int, *, hold_open: bool = False) -> None:
        self.target = (host, port)  # a host starting with "/" is a Unix socket directory
        # Keep the client's side open after the server ended its side: the client reads
        # the server's last words (a FATAL error) but no end of stream, as under load a
        # client may act on the first before it has read the second.
        self.hold_open = hold_open
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self.loop).result(10)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cut()
        # End the pipes' tasks here: left pending, they are destroyed with the loop and
        # their "Task was destroyed" log fires in whatever runs the garbage collector.
        asyncio.run_coroutine_threadsafe(self._cancel_tasks(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _cancel_tasks(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.target
        if host.startswith("/"):  # the embedded server listens on a Unix socket
            up_reader, up_writer = await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        else:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            if not (self.hold_open and dst is writer):
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


def _through(url: str, port: int) -> str:
    """`url` reaching the same database through the relay (TCP, no `?host=` socket)."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("host="))
    return urlunsplit(
        parts._replace(
            netloc=f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}", query=query
        )
    )


def _server_of(url: str) -> tuple[str, int]:
    """Where the URL's server listens: its host (or `?host=` socket directory) and port."""
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    return socket_dir or parts.hostname or "127.0.0.1", parts.port or 5432


@pytest.fixture
def relay(database_url: str) -> Iterator[Relay]:
    relay = Relay(*_server_of(database_url))
    relay.start()
    yield relay
    relay.close()


async def test_database_away_answers_503_with_retry_after_then_recovers(
    make_client: Any, make_company: Any, relay: Relay, database_url: str
) -> None:
    client = await make_client(database_url=_through(database_url, relay.port))
    company = await make_company()
    headers = await login(client, company.owner)
    assert (await client.get("/api/v1/contacts", headers=headers)).status == 200

    relay.cut()
    for path in ("/api/v1/contacts", "/api/v1/departments"):
        resp = await client.get(path, headers=headers)
        assert resp.status == 503, await resp.text()
        assert resp.headers["Retry-After"] == str(UNAVAILABLE_RETRY_AFTER)
        assert (await resp.json())["error"]["code"] == "unavailable"
    resp = await client.post("/api/v1/auth/login", json={"email": "x@y.z", "password": "p"})
    assert resp.status == 503

    relay.start()  # Postgres is back: the pool reconnects, nothing to restart
    resp = await client.get("/api/v1/contacts", headers=headers)
    assert resp.status == 200, await resp.text()


async def test_a_pooled_connection_the_server_ended_counts_as_unavailable(
    database_url: str,
) -> None:
    """A restart's FATAL reaches an idle pooled connection before its end of stream: the
    next query fails with asyncpg's InternalClientError ("cannot switch to state ...;
    another operation (2) is in progress"), which is the database going away (503, a
    settle retried), not a bug (500). Found by the fault run (bench/faults.py)."""
    relay = Relay(*_server_of(database_url), hold_open=True)
    relay.start()
    admin = await asyncpg.connect(database_url)
    pool = await asyncpg.create_pool(
        _through(database_url, relay.port),
        min_size=1,
        max_size=1,
        connection_class=PooledConnection,
    )
    try:
        async with pool.acquire() as conn:
            backend = conn.get_server_pid()
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)
        await asyncio.sleep(0.2)  # the FATAL is read; the end of stream never comes
        with pytest.raises(asyncpg.InternalClientError) as raised:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        assert database_unavailable(raised.value)
    finally:
        pool.terminate()
        await admin.close()
        relay.close()


def test_only_connection_failures_count_as_unavailable() -> None:
    assert database_unavailable(ConnectionRefusedError())
    assert database_unavailable(asyncpg.exceptions.CannotConnectNowError("starting up"))
    assert database_unavailable(asyncpg.exceptions.AdminShutdownError("terminating"))
    assert database_unavailable(asyncpg.exceptions.ConnectionDoesNotExistError("gone"))
    assert database_unavailable(asyncpg.exceptions.TooManyConnectionsError("full"))
    assert database_unavailable(asyncpg.InterfaceError("connection is closed"))
    assert not database_unavailable(asyncpg.exceptions.UniqueViolationError("duplicate"))
    assert not database_unavailable(asyncpg.exceptions.UndefinedColumnError("typo"))
    assert not database_unavailable(asyncpg.InterfaceError("another operation is in progress"))
    assert not database_unavailable(asyncpg.InternalClientError("called on a free holder"))
    assert not database_unavailable(ValueError("bug"))


async def test_a_starting_process_waits_for_the_database_to_come_up(
    relay: Relay, database_url: str
) -> None:
    """A worker started during a database restart (the relay refusing connections)
    opens its pool once the database answers, instead of exiting."""
    relay.cut()
    engine = make_engine(_through(database_url, relay.port))
    loop = asyncio.get_running_loop()
    loop.call_later(0.6, relay.start)  # the database is back on the same address
    try:
        await start_pool_waiting(engine, wait_seconds=30, min_size=1, max_size=2)
        assert await engine.pool.fetchval("SELECT 1") == 1
    finally:
        await engine.close_connection_pool()


async def test_waiting_for_the_database_gives_up_after_its_deadline(
    relay: Relay, database_url: str
) -> None:
    relay.cut()
    engine = make_engine(_through(database_url, relay.port))
    with pytest.raises(OSError):
        await start_pool_waiting(engine, wait_seconds=0.5, min_size=1, max_size=2)
