"""Private PostgreSQL and Redis servers for the fault run, which restarts them.

The machine's servers (5432, 6379) are shared with tests and other runs and are never
restarted; these are the fault run's own: a fresh cluster (`initdb`, `pg_ctl` on a free
port, data under /tmp) and a `redis-server` without persistence, both removed on exit.
PostgreSQL refuses to run as root, so as root its commands run as the `postgres` user.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis.asyncio as redis_async

from bench.common import free_port


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError(f"{name} not found: the fault run needs PostgreSQL's server binaries")
    return found


def _as_postgres(argv: Sequence[str]) -> list[str]:
    """As root, run as the `postgres` user (initdb and postgres refuse root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


async def _run(argv: Sequence[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{out.decode()[-2000:]}")


@dataclass
class PrivatePostgres:
    """A throwaway cluster on a free port; `restart` is `pg_ctl restart -m <mode>`."""

    base: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> list[str]:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        options += " -c max_connections=300"
        return _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, *args])

    async def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        argv = [_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]
        await _run(_as_postgres([*argv, "-E", "UTF8", "--no-sync"]))

    async def start(self) -> None:
        await _run(self._ctl("-l", str(self.base / "server.log"), "-w", "start"))

    async def restart(self, mode: str) -> float:
        """`pg_ctl restart -m mode`; seconds until it accepts connections again."""
        began = time.monotonic()
        await _run(self._ctl("-l", str(self.base / "server.log"), "-m", mode, "-w", "restart"))
        await self.wait_ready()
        return time.monotonic() - began

    async def wait_ready(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = await asyncpg.connect(self.url)
            except (OSError, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
            else:
                await conn.close()
                return

    async def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            await _run(self._ctl("-m", "immediate", "-w", "stop"))


@contextlib.asynccontextmanager
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="guiche-faults-pg-")))
    try:
        await server.init()
        await server.start()
        await server.wait_ready()
        yield server
    finally:
        await server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


@dataclass
class PrivateRedis:
    """`redis-server` on a free port with no persistence: a restart empties it."""

    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        argv = [shutil.which("redis-server") or "redis-server", "--port", str(self.port)]
        argv += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30.0
        client = redis_async.from_url(self.url)
        try:
            while True:
                try:
                    await client.ping()
                    return
                except (OSError, redis_async.RedisError):
                    if self.process.returncode is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on {self.port} did not start") from None
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def restart(self, down_seconds: float = 1.0) -> float:
        """Kill it (queued tasks and all keys are gone), wait, start it empty."""
        began = time.monotonic()
        await self.stop()
        await asyncio.sleep(down_seconds)
        await self.start()
        return time.monotonic() - began


@contextlib.asynccontextmanager
async def private_redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
