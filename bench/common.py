"""Shared plumbing for every benchmark: one report shape, one way to start the real processes.

Each benchmark measures the real thing and a ceiling for the same work in the same run,
then prints one JSON document (stdout) and a short human table (stderr) via `emit`. The
helpers here keep those reports comparable: the same environment facts, the same target
evaluation, the same fresh-database lifecycle and the same way of starting `guiche`
subprocesses. Nothing here asserts a timing; targets are reported as met or unmet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import functools
import hashlib
import hmac
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import asyncpg
import orjson

ROOT = Path(__file__).resolve().parent.parent
LOCK_PATH = Path("/tmp/guiche-bench.lock")
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
FIXTURES_DIR = ROOT / "tests" / "fixtures"
REPORT_KEYS = (
    "benchmark",
    "parameters",
    "figures",
    "ceiling",
    "ratio",
    "targets",
    "environment",
    "notes",
)
"""Top-level keys of every report (the smoke test checks them)."""


# --- command line --------------------------------------------------------------------


def base_parser(description: str) -> argparse.ArgumentParser:
    """The flags every benchmark shares; each adds its own sizes on top."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes: proves the code path runs (the test suite uses it); figures mean nothing",
    )
    parser.add_argument(
        "--server-url",
        default=os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL,
        help="Postgres server to create the throwaway bench database on (default: DATABASE_URL)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        help="Redis for the guiche processes (default: REDIS_URL)",
    )
    parser.add_argument("--json-out", type=Path, help="also write the JSON report to this file")
    parser.add_argument(
        "--no-lock",
        action="store_true",
        help=f"do not serialise measurement runs through {LOCK_PATH}",
    )
    parser.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="py-spy the server when a target is missed (auto), on every run, or never",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="GUICHE_LOG_LEVEL of the guiche processes (default: the shipped default, INFO)",
    )
    return parser


# --- statistics ----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p99/max in milliseconds of latencies given in seconds (None when there are none)."""

    def ms(value: float) -> float | None:
        return None if math.isnan(value) else round(value * 1000.0, 3)

    return {
        "count": len(seconds),
        "p50_ms": ms(percentile(seconds, 50)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds)) if seconds else None,
    }


def per_second(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def ratio(value: float | None, ceiling: float | None) -> float | None:
    """value / ceiling rounded to 3 places; None when either is missing or the ceiling is 0."""
    if value is None or not ceiling:
        return None
    return round(value / ceiling, 3)


# --- targets -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A goal from issue 7, checked against one figure of the report (never asserted)."""

    name: str
    figure: str
    op: Literal[">=", "<=", "=="]
    threshold: float
    unit: str = ""

    def evaluate(self, figures: Mapping[str, Any]) -> dict[str, Any]:
        value = figures.get(self.figure)
        met: bool | None = None
        if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
            met = {
                ">=": value >= self.threshold,
                "<=": value <= self.threshold,
                "==": value == self.threshold,
            }[self.op]
        return {
            "name": self.name,
            "figure": self.figure,
            "op": self.op,
            "threshold": self.threshold,
            "unit": self.unit,
            "value": value,
            "met": met,
        }


# --- the report ----------------------------------------------------------------------


async def environment_facts(database_url: str, redis_url: str | None) -> dict[str, Any]:
    """What the numbers depend on: versions, CPU count and model, memory."""
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "postgres": None,
        "redis": None,
    }
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(database_url)
        try:
            facts["postgres"] = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
    if redis_url:
        with contextlib.suppress(Exception):
            import redis.asyncio as redis_async

            client = redis_async.from_url(redis_url)
            try:
                facts["redis"] = (await client.info("server")).get("redis_version")
            finally:
                await client.aclose()
    return facts


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def make_report(
    benchmark: str,
    *,
    parameters: Mapping[str, Any],
    figures: Mapping[str, Any],
    ceiling: Mapping[str, Any],
    ratios: Mapping[str, float | None],
    targets: Sequence[Target],
    environment: Mapping[str, Any],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The one report shape (REPORT_KEYS); targets are evaluated against `figures`."""
    return {
        "benchmark": benchmark,
        "parameters": dict(parameters),
        "figures": dict(figures),
        "ceiling": dict(ceiling),
        "ratio": dict(ratios),
        "targets": [target.evaluate({**figures, **ratios}) for target in targets],
        "environment": dict(environment),
        "notes": list(notes),
    }


def unmet(report: Mapping[str, Any]) -> list[str]:
    """Names of the targets the report misses (unknown counts as missed)."""
    return [t["name"] for t in report["targets"] if t["met"] is not True]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def targets_table(report: Mapping[str, Any]) -> str:
    rows = [
        (t["name"], f"{t['op']} {_cell(t['threshold'])} {t['unit']}".strip(), t["value"], t["met"])
        for t in report["targets"]
    ]
    return format_table(("target", "goal", "value", "met"), rows)


def emit(
    report: Mapping[str, Any],
    table: str,
    *,
    json_out: Path | None = None,
) -> None:
    """The JSON document on stdout (one line, machine-readable); the human table on stderr."""
    document = json.dumps(report, default=str)
    print(document, flush=True)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    env = report["environment"]
    header = (
        f"== {report['benchmark']} == {env.get('cpu_count')} CPUs ({env.get('cpu_model')}), "
        f"Python {env.get('python')}, Postgres {env.get('postgres')}, Redis {env.get('redis')}"
    )
    print(f"\n{header}\n{table}\n\n{targets_table(report)}\n", file=sys.stderr, flush=True)


# --- one measurement at a time ---------------------------------------------------------


@contextlib.contextmanager
def bench_lock(enabled: bool = True) -> Iterator[None]:
    """Hold LOCK_PATH (flock) so two benchmarks never measure on the same CPUs at once."""
    if not enabled:
        yield
        return
    with LOCK_PATH.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if _held_by_ancestor(LOCK_PATH):
                yield
                return
            print(f"waiting for {LOCK_PATH} (another benchmark is measuring)", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _held_by_ancestor(path: Path) -> bool:
    """Whether a process this one descends from holds `path`'s flock (`flock FILE python -m
    bench.X`): waiting for it would wait forever, and the measurement is already alone."""
    try:
        inode = path.stat().st_ino
        locks = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return False
    holders = {
        int(fields[4])
        for fields in (line.split() for line in locks)
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}")
    }
    pid = os.getppid()
    while pid > 1:
        if pid in holders:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rpartition(")")[2].split()[1])
    return False


def run_benchmark(bench: Any, table: Any, args: Any) -> None:
    """A benchmark's `main`: measure under the lock, then print JSON and the table."""
    with bench_lock(not args.no_lock):
        report = asyncio.run(bench(args))
    emit(report, table(report), json_out=args.json_out)


# --- databases -----------------------------------------------------------------------


def with_database(server_url: str, name: str) -> str:
    path, sep, query = server_url.partition("?")
    base, _, _ = path.rpartition("/")
    return f"{base}/{name}{sep}{query}"


@contextlib.asynccontextmanager
async def bench_database(server_url: str, prefix: str = "guiche_bench") -> AsyncIterator[str]:
    """A fresh database on the server, migrated by `guiche migrate`, dropped on exit."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = with_database(server_url, name)
    try:
        await run_command([*guiche_command(), "migrate"], env={**os.environ, "DATABASE_URL": url})
        yield url
    finally:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def fetchval(database_url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def fetchrow(database_url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow(sql, *args)
    finally:
        await conn.close()


# --- processes -----------------------------------------------------------------------


def guiche_command() -> list[str]:
    """The installed `guiche` script next to this interpreter (the venv's)."""
    script = Path(sys.executable).parent / "guiche"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from guiche.cli import main; sys.exit(main())"]


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def run_keys() -> tuple[str, str]:
    """(secret key, Fernet key) shared by every guiche process of this benchmark run."""
    from cryptography.fernet import Fernet

    return secrets.token_urlsafe(48), Fernet.generate_key().decode()


def guiche_env(
    database_url: str,
    redis_url: str | None,
    *,
    port: int | None = None,
    task_queue: str | None = None,
    log_level: str = "INFO",
    data_dir: Path | None = None,
    **extra: str,
) -> dict[str, str]:
    """Environment for a `guiche` subprocess of this run (keys shared, API limit off).

    The per-caller API limit is off because the load generator is one address; provider
    webhooks are never limited anyway. `task_queue` keeps this run's stream apart from
    tests and other benchmarks sharing the Redis server.
    """
    secret_key, fernet_key = run_keys()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "GUICHE_SECRET_KEY": secret_key,
        "GUICHE_ENCRYPTION_KEYS": fernet_key,
        "GUICHE_HOST": "127.0.0.1",
        "GUICHE_RATE_LIMIT_PER_MINUTE": "0",
        # One login serves a whole run: a 100,000-target campaign outlives the default
        # 15-minute access token (the harness would poll with an expired one).
        "GUICHE_ACCESS_TOKEN_TTL_SECONDS": "86400",
        "GUICHE_LOG_LEVEL": log_level,
        "GUICHE_LOG_JSON": "true",
        "GUICHE_DATA_DIR": str(data_dir or Path(tempfile.gettempdir()) / "guiche-bench"),
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    if port is not None:
        env["GUICHE_PORT"] = str(port)
    if task_queue is not None:
        env["GUICHE_TASK_QUEUE"] = task_queue
    env.update(extra)
    return env


class Process:
    """A child process whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None):
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else dict(os.environ)
        self.log_path = Path(tempfile.mkstemp(prefix=f"guiche-bench-{name}-", suffix=".log")[1])
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> Process:
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def wait_http(self, url: str, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Until `url` answers 2xx; fails early (with the log tail) if the process dies."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if not self.alive():
                    raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(url) as response:
                        if response.status < 300:
                            return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready at {url}:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL after `grace` seconds."""
        popen = self.popen
        if popen is None or popen.poll() is not None:
            return popen.returncode if popen else None
        popen.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(popen.wait, grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            await asyncio.to_thread(popen.wait)
        return popen.returncode

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            self.log_path.unlink()


@contextlib.asynccontextmanager
async def running(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    ready_url: str | None = None,
    ready: Callable[[Process], Awaitable[None]] | None = None,
    timeout: float = 60.0,  # noqa: ASYNC109 - a start-up deadline, not a cancel scope
    keep_log: bool = False,
) -> AsyncIterator[Process]:
    """Start a child, wait until it is ready (HTTP 2xx or a callback), stop it on exit."""
    process = Process(name, argv, env).start()
    try:
        if ready_url is not None:
            await process.wait_http(ready_url, timeout)
        if ready is not None:
            await asyncio.wait_for(ready(process), timeout)
        yield process
    finally:
        await process.stop()
        if not keep_log:
            process.cleanup()


async def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - kills the child when it passes
) -> str:
    """Run to completion; its stdout, or RuntimeError with its stderr on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env) if env is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:3])} ... exited {proc.returncode}:\n{err.decode(errors='replace')}"
        )
    return out.decode()


async def run_json(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - kills the child when it passes
) -> dict[str, Any]:
    """Run a helper process that prints one JSON object as its last stdout line."""
    out = await run_command(argv, env=env, timeout=timeout)
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{argv[:3]} printed nothing")
    return orjson.loads(lines[-1])


# --- a company with a Meta channel on a running `guiche web` -----------------------------


@dataclass(frozen=True)
class Company:
    tenant_id: uuid.UUID
    email: str
    password: str


@dataclass(frozen=True)
class MetaChannel:
    id: uuid.UUID
    phone_number_id: str
    app_secret: str

    @property
    def webhook_path(self) -> str:
        return f"/webhooks/meta_cloud/{self.id}"


async def create_company(database_url: str, name: str | None = None) -> Company:
    """A company and its owner through the operator command (`guiche tenants create`)."""
    name = name or f"Bench {secrets.token_hex(3)}"
    email = f"owner-{secrets.token_hex(5)}@bench.guiche.local"
    password = secrets.token_urlsafe(16)
    out = await run_command(
        [
            *guiche_command(),
            "tenants",
            "create",
            "--name",
            name,
            "--owner-email",
            email,
            f"--owner-password={password}",  # one token: a password may start with "-"
        ],
        env={**os.environ, "DATABASE_URL": database_url},
    )
    found = re.search(r"id:\s+([0-9a-f-]{36})", out)
    if found is None:
        raise RuntimeError(f"tenants create printed no id:\n{out}")
    return Company(uuid.UUID(found.group(1)), email, password)


async def api(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    expect: int | Sequence[int] = (200, 201),
) -> Any:
    """One REST call; raises with the error body unless the status is expected."""
    expected = (expect,) if isinstance(expect, int) else tuple(expect)
    async with session.request(method, url, headers=headers, json=json_body) as response:
        text = await response.text()
        if response.status not in expected:
            raise RuntimeError(f"{method} {url} -> {response.status}: {text[:500]}")
        return orjson.loads(text) if text else None


async def login(session: aiohttp.ClientSession, base_url: str, company: Company) -> dict[str, str]:
    data = await api(
        session,
        "POST",
        f"{base_url}/api/v1/auth/login",
        json_body={"email": company.email, "password": company.password},
    )
    return {"Authorization": f"Bearer {data['access_token']}"}


async def create_meta_channel(
    session: aiohttp.ClientSession,
    base_url: str,
    headers: Mapping[str, str],
    *,
    graph_base_url: str,
    throughput_per_second: float = 80.0,
    phone_number_id: str | None = None,
) -> MetaChannel:
    """Enable meta_cloud and create a provisioned channel whose Graph API is `graph_base_url`."""
    await api(
        session,
        "PUT",
        f"{base_url}/api/v1/plugins/meta_cloud",
        headers=headers,
        json_body={"enabled": True},
    )
    phone_number_id = phone_number_id or str(300_000_000_000_000 + secrets.randbelow(10**12))
    app_secret = secrets.token_hex(16)
    created = await api(
        session,
        "POST",
        f"{base_url}/api/v1/channels",
        headers=headers,
        json_body={
            "type": "meta_cloud",
            "name": f"Bench {phone_number_id[-4:]}",
            "credentials": {
                "phone_number_id": phone_number_id,
                "waba_id": "102938475610293",
                "access_token": "bench-token-" + secrets.token_hex(8),
                "app_secret": app_secret,
                "verify_token": secrets.token_hex(8),
                "graph_base_url": graph_base_url,
                "throughput_per_second": throughput_per_second,
            },
        },
        expect=201,
    )
    if created["state"] != "provisioned":
        raise RuntimeError(f"channel not provisioned: {created['state']} {created['state_detail']}")
    return MetaChannel(uuid.UUID(created["id"]), phone_number_id, app_secret)


# --- Meta webhooks ---------------------------------------------------------------------


@dataclass(frozen=True)
class InboundText:
    wamid: str
    phone: str
    name: str
    body: str


def inbound_texts(
    count: int, *, start: int = 0, run: str | None = None, customers: int | None = None
) -> list[InboundText]:
    """`count` text messages with unique wamids, each from its own phone number, or from
    `customers` phones in turn (message i from phone i mod customers)."""
    run = run or secrets.token_hex(4)
    return [
        InboundText(
            wamid=f"wamid.bench.{run}.{i}",
            phone=f"55119{(i % customers if customers else i) % 10**8:08d}",
            name=f"Cliente {i}",
            body=f"Oi, boa tarde! Pedido #{i} ainda não chegou. Podem verificar?",
        )
        for i in range(start, start + count)
    ]


@functools.cache
def _meta_text_template() -> dict[str, Any]:
    """Meta's text webhook as the repository's fixture has it."""
    return orjson.loads((FIXTURES_DIR / "meta" / "webhook_text.json").read_bytes())


def meta_text_webhook(
    phone_number_id: str, messages: Sequence[InboundText], *, timestamp: int | None = None
) -> bytes:
    """Meta's `messages` webhook (the fixture's shape) carrying `messages` for one number."""
    payload = json.loads(json.dumps(_meta_text_template()))
    value = payload["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = phone_number_id
    ts = str(timestamp if timestamp is not None else int(time.time()))
    value["contacts"] = [{"profile": {"name": m.name}, "wa_id": m.phone} for m in messages]
    value["messages"] = [
        {"from": m.phone, "id": m.wamid, "timestamp": ts, "type": "text", "text": {"body": m.body}}
        for m in messages
    ]
    return orjson.dumps(payload)


def meta_signature(body: bytes, app_secret: str) -> str:
    """`X-Hub-Signature-256` as Meta computes it: HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


# --- profiles --------------------------------------------------------------------------


@dataclass
class Profile:
    """Where a process spent its samples: top functions by own and by inclusive time."""

    seconds: float
    samples: int
    own: list[tuple[str, float]] = field(default_factory=list)
    inclusive: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "samples": self.samples,
            "top_own_percent": [[name, pct] for name, pct in self.own],
            "top_inclusive_percent": [[name, pct] for name, pct in self.inclusive],
            "inclusive_note": "frames in >= 90 % of samples and asyncio internals left out",
            "error": self.error,
        }


def py_spy_path() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


async def py_spy(pid: int, seconds: float, *, top: int = 40, idle: bool = False) -> Profile:
    """Sample `pid` with py-spy for `seconds` (run it while the load is on).

    Frames are aggregated by function from py-spy's collapsed stacks; `own` is the
    leaf (self) share of samples, `inclusive` counts a function once per sample it
    appears in. Idle frames (waiting in epoll) are dropped unless `idle`.
    """
    tool = py_spy_path()
    if tool is None:
        return Profile(seconds, 0, error="py-spy not installed (pip install -e '.[bench]')")
    out = Path(tempfile.mkstemp(prefix="guiche-bench-pyspy-", suffix=".txt")[1])
    argv = [tool, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    argv += ["--format", "raw", "--output", str(out), "--rate", "200"]
    if idle:
        argv.append("--idle")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
    finally:
        text = await asyncio.to_thread(_read_and_remove, out)
    if proc.returncode != 0 or not text:
        return Profile(seconds, 0, error=err.decode(errors="replace")[-500:] or "empty profile")
    return _collapse(text, seconds, top)


def _read_and_remove(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None
    finally:
        path.unlink(missing_ok=True)


def _collapse(text: str, seconds: float, top: int) -> Profile:
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + count

    def ranked(table: dict[str, int], keep: Callable[[str, int], bool]) -> list[tuple[str, float]]:
        best = sorted(table.items(), key=lambda item: item[1], reverse=True)
        chosen = [(name, n) for name, n in best if keep(name, n)][:top]
        return [(name, round(100.0 * n / total, 1)) for name, n in chosen] if total else []

    def branch(name: str, n: int) -> bool:
        """Not the trunk every sample shares (entry point, event loop internals)."""
        return n < 0.9 * total and "(asyncio/" not in name

    return Profile(seconds, total, ranked(own, lambda *_: True), ranked(inclusive, branch))


def _frame_name(frame: str) -> str:
    """`func (/long/path/pkg/mod.py:123)` → `func (pkg/mod.py)`: lines of one function merge."""
    match = re.match(r"(.*) \((.*?):\d+\)$", frame.strip())
    if not match:
        return frame.strip()
    func, path = match.groups()
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[len(parts) - parts[::-1].index("site-packages") :]
    else:
        roots = [i for i, part in enumerate(parts) if part.startswith("guiche")]
        parts = parts[roots[-1] :] if roots else parts[-2:]
    return f"{func} ({'/'.join(parts)})"


def profile_table(profile: Profile, rows: int = 15) -> str:
    if profile.error:
        return f"(no profile: {profile.error})"
    lines = [f"py-spy: {profile.samples} samples over {profile.seconds:.0f} s (non-idle)"]
    lines.append(format_table(("own %", "function"), [(p, n) for n, p in profile.own[:rows]]))
    lines.append(
        format_table(
            ("incl %", "function (below the event loop)"),
            [(p, n) for n, p in profile.inclusive[:rows]],
        )
    )
    return "\n\n".join(lines)


def wants_profile(mode: str, missed: bool) -> bool:
    return mode == "always" or (mode == "auto" and missed)


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,  # noqa: ASYNC109 - returns False when it passes, never raises
    interval: float = 0.1,
) -> bool:
    """Poll `check` until it is true or `timeout` seconds pass; True when it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


# --- the whole stack ---------------------------------------------------------------------


@dataclass
class Stack:
    """A fresh database, a fake Graph API, `guiche web` (and optionally a worker), and a
    company with an owner session and a provisioned Meta channel pointed at the fake."""

    database_url: str
    redis_url: str | None
    web_url: str
    graph_url: str
    web: Process
    graph: Process
    company: Company
    headers: dict[str, str]
    channel: MetaChannel
    task_queue: str
    env: dict[str, str]
    worker: Process | None = None


@contextlib.asynccontextmanager
async def guiche_stack(
    server_url: str,
    redis_url: str | None,
    *,
    log_level: str = "INFO",
    throughput_per_second: float = 80.0,
    worker: bool = False,
    web_env: Mapping[str, str] | None = None,
    graph_args: Sequence[str] = (),
) -> AsyncIterator[Stack]:
    """Everything a benchmark of the real server needs, torn down (database dropped) on exit."""
    task_queue = f"guiche:bench:{secrets.token_hex(4)}"
    async with bench_database(server_url) as database_url:
        graph_port, web_port = free_port(), free_port()
        graph_url = f"http://127.0.0.1:{graph_port}"
        web_url = f"http://127.0.0.1:{web_port}"
        env = guiche_env(
            database_url, redis_url, port=web_port, task_queue=task_queue, log_level=log_level
        )
        company = await create_company(database_url)
        async with contextlib.AsyncExitStack() as stack:
            graph = await stack.enter_async_context(
                running(
                    "fake-graph",
                    python_module("bench.fake_graph", "--port", str(graph_port), *graph_args),
                    ready_url=f"{graph_url}/_stats",
                )
            )
            web_proc = await stack.enter_async_context(
                running(
                    "guiche-web",
                    [*guiche_command(), "web"],
                    {**env, **(web_env or {})},
                    ready_url=f"{web_url}/health",
                )
            )
            async with aiohttp.ClientSession() as session:
                headers = await login(session, web_url, company)
                channel = await create_meta_channel(
                    session,
                    web_url,
                    headers,
                    graph_base_url=graph_url,
                    throughput_per_second=throughput_per_second,
                )
            worker_proc = None
            if worker:
                worker_proc = await stack.enter_async_context(
                    running("guiche-worker", [*guiche_command(), "worker"], env)
                )
            yield Stack(
                database_url=database_url,
                redis_url=redis_url,
                web_url=web_url,
                graph_url=graph_url,
                web=web_proc,
                graph=graph,
                company=company,
                headers=headers,
                channel=channel,
                task_queue=task_queue,
                env=env,
                worker=worker_proc,
            )


@contextlib.asynccontextmanager
async def plugin_services(database_url: str) -> AsyncIterator[Any]:
    """Services as a plugin task gets them (engine, pool), in this process."""
    from guiche.app import build_services, close_resources, open_resources
    from guiche.foundation.config import Settings

    settings = Settings(
        database_url=database_url,
        redis_url=None,
        secret_key=secrets.token_urlsafe(48),
        log_json=False,
    )
    services = build_services(settings)
    await open_resources(services)
    try:
        yield services
    finally:
        await close_resources(services)
