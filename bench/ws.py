"""ws: K authenticated WebSockets on one `guiche web`, fan-out latency while ingesting.

K sockets (default 5,000) of agents spread over companies of `--sockets-per-tenant`
agents each (one department, one Meta channel queueing into it; an event about a
queued conversation reaches every agent of the company), held by client processes
(`--client-processes`, each with a raised fd limit). A sender process posts signed Meta
webhooks at a fixed rate, one message per request, round-robin over the companies:
first at `--extra-rate` (default 100/s, a rate one process sustains here), then at the
issue's `--rate` (default 500/s), `--seconds` each. Figures: fan-out latency p50/p99 of
`message.new` frames — from the event's `created_at` (set by Postgres in the ingest
transaction, so an upper bound on commit → receipt) and from the moment the webhook
was due (stamped in the text) — and the server's RSS per socket (VmRSS after
connecting − before, / K).

Ceiling: a bare aiohttp WebSocket server (own process, no auth, database or Redis)
holding the same sockets in the same groups and broadcasting frames of the same size
at the same rates: its RSS per socket and its creation → receipt latency.

    python -m bench.ws [--sockets 10000] [--rate 500] [--extra-rate 100] [--seconds 10]

The same module is also each helper process: `--role client | sender | bare |
traced-web` (the last: `guiche web` under tracemalloc, for the memory profile).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import (
    InboundText,
    Process,
    Stack,
    Target,
    base_parser,
    bench_lock,
    emit,
    environment_facts,
    format_table,
    free_port,
    guiche_stack,
    latency_ms,
    make_report,
    meta_signature,
    meta_text_webhook,
    per_second,
    profile_table,
    py_spy,
    python_module,
    ratio,
    run_keys,
    running,
    wants_profile,
)

TARGETS = (
    Target("ws: sockets held by one process", "sockets_connected", ">=", 10_000),
    Target("ws: server memory per socket", "rss_per_socket_kib", "<=", 20, "KiB"),
    Target("ws: fan-out p99, commit to receipt", "fanout_p99_ms", "<=", 50, "ms"),
)


def targets_for(rate: float) -> tuple[Target, ...]:
    """The issue's targets, plus the load the fan-out was measured under (500/s asked)."""
    achieved = Target(
        f"ws: ingest rate held (asked {rate:g}/s, issue: 500/s)",
        "ingest_acked_per_second",
        ">=",
        round(0.95 * rate, 1),
        "/s",
    )
    return (*TARGETS, achieved)


GRACE_SECONDS = 5.0
"""How long past its schedule the sender waits for a server that fell behind."""

TRACE_FRAMES = 16
"""Frames kept per allocation by the traced server: enough to reach Guichê's own code."""

STAMP = "t="
"""The sender writes `t=<epoch seconds>` into each message's text as it posts it."""


def raise_fd_limit() -> int:
    """Soft fd limit up to the hard one (children inherit it: the server needs K fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1_048_576
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def read_json(path: str | Path) -> Any:
    return orjson.loads(Path(path).read_bytes())


def write_json(path: str | Path, value: Any) -> None:
    Path(path).write_bytes(orjson.dumps(value))


def epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


# === role: client ======================================================================


async def client_main(args: argparse.Namespace) -> None:
    """Open every URL in the file, report when connected, and record `message.new`
    frames; on `dump` (stdin) write what arrived so far to `--result-file`, on `stop`
    (or end of input) close every socket and exit."""
    raise_fd_limit()
    urls: list[str] = read_json(args.urls_file)
    created: list[float] = []
    received: list[float] = []
    sent: list[float] = []
    closes: dict[str, int] = {}
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    session = aiohttp.ClientSession(connector=connector)
    gate = asyncio.Semaphore(args.connect_concurrency)
    stopping = False

    def record(data: str) -> None:
        now = time.time()
        frame = orjson.loads(data)
        if frame.get("type") != "message.new":
            return
        created.append(epoch(frame["created_at"]))
        received.append(now)
        body = (frame.get("data") or {}).get("body") or ""
        at = body.rfind(STAMP)
        sent.append(float(body[at + len(STAMP) :]) if at >= 0 else math.nan)

    async def hold(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                record(msg.data)
        if not stopping:
            key = str(ws.close_code)
            closes[key] = closes.get(key, 0) + 1

    async def connect(url: str) -> asyncio.Task[None] | None:
        async with gate:
            try:
                ws = await session.ws_connect(url, autoping=True, max_msg_size=0)
                first = await ws.receive(timeout=60)
            except (aiohttp.ClientError, TimeoutError, OSError):
                return None
            if (
                first.type is not aiohttp.WSMsgType.TEXT
                or orjson.loads(first.data).get("type") != "ready"
            ):
                await ws.close()
                return None
            sockets.append(ws)
            return asyncio.create_task(hold(ws))

    began = time.perf_counter()
    tasks = await asyncio.gather(*(connect(url) for url in urls))
    holders = [task for task in tasks if task is not None]
    print(
        json.dumps(
            {
                "connected": len(holders),
                "failed": len(urls) - len(holders),
                "connect_seconds": round(time.perf_counter() - began, 3),
            }
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "dump":
            result = {"created": created, "received": received, "sent": sent, "closes": closes}
            write_json(args.result_file, result)
            print(json.dumps({"dumped": True}), flush=True)
        else:  # "stop", or the orchestrator went away
            break
    stopping = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets)), timeout=20)
    for task in holders:
        task.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    await session.close()
    print(json.dumps({"done": True}), flush=True)


class Clients:
    """The client processes of one measurement, driven over their stdin/stdout."""

    def __init__(self, urls: list[str], processes: int, connect_concurrency: int) -> None:
        self.urls = urls
        self.count = max(1, min(processes, len(urls)))
        self.connect_concurrency = connect_concurrency
        self.dir = Path(tempfile.mkdtemp(prefix="guiche-bench-ws-"))
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> dict[str, Any]:
        began = time.perf_counter()
        for index in range(self.count):
            part = self.urls[index :: self.count]
            urls_file = self.dir / f"urls-{index}.json"
            urls_file.write_text(json.dumps(part))
            proc = await asyncio.create_subprocess_exec(
                *python_module(
                    "bench.ws",
                    "--role",
                    "client",
                    "--urls-file",
                    str(urls_file),
                    "--result-file",
                    str(self.dir / f"result-{index}.json"),
                    "--connect-concurrency",
                    str(self.connect_concurrency),
                ),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            self.procs.append(proc)
        reports = [await self._line(proc) for proc in self.procs]
        return {
            "connected": sum(r["connected"] for r in reports),
            "failed": sum(r["failed"] for r in reports),
            "connect_seconds": round(time.perf_counter() - began, 3),
        }

    async def _tell(self, command: bytes) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(command + b"\n")
            await proc.stdin.drain()

    async def dump(self) -> dict[str, Any]:
        """Every client's frames so far (the sockets stay open)."""
        await self._tell(b"dump")
        merged: dict[str, Any] = {"created": [], "received": [], "sent": [], "closes": {}}
        for index, proc in enumerate(self.procs):
            await self._line(proc, wait=120)
            part = orjson.loads((self.dir / f"result-{index}.json").read_bytes())
            for key in ("created", "received", "sent"):
                merged[key].extend(part[key])
            for code, n in part["closes"].items():
                merged["closes"][code] = merged["closes"].get(code, 0) + n
        return merged

    async def stop(self) -> None:
        await self._tell(b"stop")
        for proc in self.procs:
            await self._line(proc, wait=120)
            await proc.wait()

    async def kill(self) -> None:
        """Whatever is still running goes; the scratch files too."""
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    async def _line(proc: asyncio.subprocess.Process, wait: float = 300) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), wait)
        if not line:
            raise RuntimeError(f"ws client exited ({await proc.wait()}) without reporting")
        return json.loads(line)


# === role: sender ======================================================================


async def sender_main(args: argparse.Namespace) -> None:
    """Post one-message Meta webhooks at a fixed rate (open loop), round-robin over the
    channels; each message's text carries the time it was due. A server that cannot keep
    up gets `GRACE_SECONDS` to catch up; what it has not answered by then is abandoned
    (counted, not waited for), so the run's length stays bounded."""
    spec = read_json(args.spec_file)
    channels: list[dict[str, str]] = spec["channels"]
    total = int(args.rate * args.seconds)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lag = 0.0
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(i: int) -> None:
            channel = channels[i % len(channels)]
            contact = (i // len(channels)) % args.contacts_per_tenant
            phone = f"55119{contact:08d}"
            text = InboundText(
                wamid=f"wamid.ws.{args.run}.{i}",
                phone=phone,
                name=f"Cliente {contact}",
                body=f"Oi! Mensagem {i} {STAMP}{time.time():.6f}",
            )
            body = meta_text_webhook(channel["phone_number_id"], [text])
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": meta_signature(body, spec["app_secret"]),
            }
            began = time.perf_counter()
            try:
                url = f"{args.web_url}/webhooks/meta_cloud/{channel['id']}"
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        latencies.append(time.perf_counter() - began)
                    else:
                        errors[f"http_{response.status}"] = (
                            errors.get(f"http_{response.status}", 0) + 1
                        )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

        started_epoch = time.time()
        started = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = started + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = max(lag, -delay)
            tasks.append(asyncio.create_task(post(i)))
        grace = started + args.seconds + GRACE_SECONDS - time.perf_counter()
        _, pending = await asyncio.wait(tasks, timeout=max(grace, 0.1))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "sent": total,
                "acked": len(latencies),
                "abandoned": len(pending),
                "errors": errors,
                "started": started_epoch,
                "elapsed_s": round(elapsed, 3),
                "acked_per_second": per_second(len(latencies), elapsed),
                "max_schedule_lag_ms": round(lag * 1000, 1),
                "ack": latency_ms(latencies),
            }
        ),
        flush=True,
    )


# === role: bare (the ceiling server) ===================================================


def bare_app() -> aiohttp.web.Application:
    """Sockets in named groups; `POST /publish?rate=&seconds=` broadcasts frames shaped
    like Guichê's `message.new` to one group after another, each stamped when made."""
    from aiohttp import web

    groups: dict[str, set[web.WebSocketResponse]] = {}
    app = web.Application()

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, compress=False)
        await ws.prepare(request)
        members = groups.setdefault(request.query.get("group", ""), set())
        members.add(ws)
        try:
            await ws.send_str(json.dumps({"type": "ready"}))
            async for _ in ws:
                pass
        finally:
            members.discard(ws)
        return ws

    async def publish(request: web.Request) -> web.Response:
        rate, seconds = float(request.query["rate"]), float(request.query["seconds"])
        names = sorted(groups)
        total = int(rate * seconds)
        started_epoch, started = time.time(), time.perf_counter()
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = orjson.dumps(
                {
                    "seq": i,
                    "type": "message.new",
                    "data": {
                        "id": str(uuid.uuid4()),
                        "conversation_id": str(uuid.uuid4()),
                        "contact_id": str(uuid.uuid4()),
                        "channel_id": str(uuid.uuid4()),
                        "direction": "in",
                        "type": "text",
                        "body": f"Oi! Mensagem {i}",
                        "status": "received",
                        "provider_message_id": f"wamid.bare.{i}",
                        "created_at": dt.datetime.now(dt.UTC),
                        "sender_name": "Cliente",
                    },
                    "conversation_id": str(uuid.uuid4()),
                    "created_at": dt.datetime.now(dt.UTC),
                }
            ).decode()
            for ws in list(groups.get(names[i % len(names)], ())):
                await ws.send_str(frame)
        elapsed = time.perf_counter() - started
        return web.json_response(
            {"sent": total, "acked": total, "started": started_epoch, "elapsed_s": elapsed}
        )

    app.router.add_get("/health", health)
    app.router.add_get("/ws", socket)
    app.router.add_post("/publish", publish)
    return app


def bare_main(args: argparse.Namespace) -> None:
    from aiohttp import web

    raise_fd_limit()
    web.run_app(bare_app(), host="127.0.0.1", port=args.port, print=None, backlog=4096)


# === role: traced-web (where a socket's memory goes) ===================================


def traced_web_main(args: argparse.Namespace) -> int:
    """`guiche web` under tracemalloc; SIGUSR1 writes a snapshot `<prefix>-<n>.bin`."""
    import gc
    import signal
    import tracemalloc

    from guiche.cli import main as guiche_main

    tracemalloc.start(TRACE_FRAMES)
    taken = 0

    def snapshot(signum: int, frame: Any) -> None:
        nonlocal taken
        gc.collect()
        taken += 1
        path = f"{args.snapshot_prefix}-{taken}.bin"
        tracemalloc.take_snapshot().dump(path + ".tmp")
        os.replace(path + ".tmp", path)  # whole, or not there

    signal.signal(signal.SIGUSR1, snapshot)
    return guiche_main(["web"])


async def memory_profile(stack: Stack, world: World, plan: Plan, sockets: int) -> dict[str, Any]:
    """Open `sockets` sockets on a second, tracemalloc'ed `guiche web`; the allocation
    sites that grew, per socket, each named by its line and the Guichê frame that led
    there (RSS here is inflated by tracemalloc itself)."""
    import signal
    import tracemalloc

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**stack.env, "GUICHE_PORT": str(port)}
    env["GUICHE_WS_MAX_CONNECTIONS_PER_TENANT"] = str(max(plan.per_tenant, 2000))
    prefix = Path(tempfile.mkdtemp(prefix="guiche-bench-ws-trace-")) / "snap"
    argv = python_module("bench.ws", "--role", "traced-web", "--snapshot-prefix", str(prefix))
    old = stack.web_url.replace("http://", "ws://", 1)
    urls = [url.replace(old, base.replace("http://", "ws://", 1), 1) for url in world.urls]
    urls = urls[:sockets]

    async def snapshot(proc: Process, n: int) -> tracemalloc.Snapshot:
        os.kill(proc.pid, signal.SIGUSR1)
        path = f"{prefix}-{n}.bin"
        for _ in range(600):
            await asyncio.sleep(0.1)
            if _exists(path):
                return tracemalloc.Snapshot.load(path)
        raise RuntimeError("no tracemalloc snapshot from the traced server")

    try:
        async with running("guiche-web-traced", argv, env, ready_url=f"{base}/health") as proc:
            await warm_up(urls[:20])
            before_rss, before = rss_kib(proc.pid), await snapshot(proc, 1)
            clients = Clients(urls, 1, plan.connect_concurrency)
            try:
                connected = (await clients.start())["connected"]
                await asyncio.sleep(1.0)
                after_rss, after = rss_kib(proc.pid), await snapshot(proc, 2)
                await clients.stop()
            finally:
                await clients.kill()
    finally:
        shutil.rmtree(prefix.parent, ignore_errors=True)
    n = max(connected, 1)
    stats = after.compare_to(before, "traceback")
    total = sum(stat.size_diff for stat in stats)
    top = []
    for stat in stats[:15]:
        frames = list(stat.traceback)  # oldest first
        ours = [f for f in frames if "/guiche/" in f.filename and "/bench/" not in f.filename]
        site = frames[-1]
        via = ours[-1] if ours else None
        top.append(
            {
                "bytes_per_socket": round(stat.size_diff / n),
                "objects_per_socket": round(stat.count_diff / n, 1),
                "allocated_at": f"{_short(site.filename)}:{site.lineno}",
                "via": f"{_short(via.filename)}:{via.lineno}" if via else None,
            }
        )
    return {
        "sockets": connected,
        "traced_kib_per_socket": round(total / n / 1024, 1),
        "rss_kib_per_socket_under_tracemalloc": round((after_rss - before_rss) / n, 1),
        "top": top,
        "table": format_table(
            ("B/socket", "objs", "allocated at", "via (Guichê frame)"),
            [
                (t["bytes_per_socket"], t["objects_per_socket"], t["allocated_at"], t["via"])
                for t in top
            ],
        )
        + f"\ntraced growth: {round(total / n / 1024, 1)} KiB per socket over {connected} sockets",
    }


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _short(path: str) -> str:
    parts = Path(path).parts
    return "/".join(parts[-2:])


# === the orchestrator ==================================================================


@dataclass(frozen=True)
class Plan:
    sockets: int
    per_tenant: int
    rate: float
    extra_rate: float  # a second pass at a rate the server sustains (0: none)
    seconds: float
    client_processes: int
    contacts_per_tenant: int
    connect_concurrency: int

    @property
    def tenants(self) -> int:
        return math.ceil(self.sockets / self.per_tenant)

    @property
    def passes(self) -> tuple[tuple[str, float], ...]:
        """(name, rate) in the order they run: the sustainable one first, so the backlog
        of a saturated pass cannot spill into it."""
        main = ("main", self.rate)
        return (("extra", self.extra_rate), main) if self.extra_rate > 0 else (main,)


@dataclass
class World:
    """What `populate` created: a socket URL per agent and the sender's channel list."""

    urls: list[str]
    spec_file: Path
    tenants: int


async def populate(stack: Stack, plan: Plan) -> World:
    """Companies (each: a department, its agents, a Meta channel queueing into it) in bulk
    SQL, and an access token per agent signed with the server's key."""
    import asyncpg

    from guiche.auth.tokens import issue_access_token
    from guiche.foundation.config import Settings
    from guiche.foundation.crypto import CredentialCipher

    secret_key, fernet_key = run_keys()
    settings = Settings(database_url=stack.database_url, secret_key=secret_key)
    cipher = CredentialCipher([fernet_key])
    app_secret = secrets.token_hex(16)
    run = secrets.token_hex(3)
    tenants, departments, channels, plugins = [], [], [], []
    users, memberships, department_members, tokens = [], [], [], []
    sender_channels = []
    for t in range(plan.tenants):
        tenant_id, department_id, channel_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        phone_number_id = str(400_000_000_000_000 + t)
        tenants.append((tenant_id, f"WS Bench {run} {t}", f"ws-bench-{run}-{t}"))
        departments.append((department_id, tenant_id, "Atendimento"))
        credentials = {
            "phone_number_id": phone_number_id,
            "waba_id": "102938475610293",
            "access_token": "bench-token",
            "app_secret": app_secret,
            "graph_base_url": stack.graph_url,
        }
        channels.append(
            (channel_id, tenant_id, "meta_cloud", f"WS {t}", cipher.encrypt(credentials),
             department_id, "provisioned")
        )  # fmt: skip
        plugins.append((tenant_id, "meta_cloud", True))
        sender_channels.append({"id": str(channel_id), "phone_number_id": phone_number_id})
        agents = min(plan.per_tenant, plan.sockets - t * plan.per_tenant)
        for a in range(agents):
            user_id = uuid.uuid4()
            users.append((user_id, f"agent-{run}-{t}-{a}@bench.guiche.local", f"Agente {a}"))
            memberships.append((tenant_id, user_id, "agent"))
            department_members.append((tenant_id, department_id, user_id))
            tokens.append(
                issue_access_token(
                    settings,
                    user_id=user_id,
                    tenant_id=tenant_id,
                    role="agent",
                    platform_admin=False,
                    ttl_seconds=6 * 3600,
                )
            )
    conn = await asyncpg.connect(stack.database_url)
    try:
        async with conn.transaction():
            copies = (
                ("tenants", ("id", "name", "slug"), tenants),
                ("departments", ("id", "tenant", "name"), departments),
                ("channels", ("id", "tenant", "type", "name", "credentials_encrypted",
                              "default_department", "state"), channels),
                ("tenant_plugins", ("tenant", "plugin", "enabled"), plugins),
                ("users", ("id", "email", "name"), users),
                ("memberships", ("tenant", "user", "role"), memberships),
                ("department_members", ("tenant", "department", "user"), department_members),
            )  # fmt: skip
            for table, columns, records in copies:
                await conn.copy_records_to_table(table, records=records, columns=columns)
    finally:
        await conn.close()
    ws_base = stack.web_url.replace("http://", "ws://", 1)
    spec_file = Path(tempfile.mkstemp(prefix="guiche-bench-ws-spec-", suffix=".json")[1])
    write_json(spec_file, {"channels": sender_channels, "app_secret": app_secret})
    return World([f"{ws_base}/ws?token={token}" for token in tokens], spec_file, plan.tenants)


async def send(
    stack: Stack, world: World, plan: Plan, rate: float, seconds: float
) -> dict[str, Any]:
    from bench.common import run_json

    return await run_json(
        python_module(
            "bench.ws",
            "--role",
            "sender",
            "--web-url",
            stack.web_url,
            "--spec-file",
            str(world.spec_file),
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--contacts-per-tenant",
            str(plan.contacts_per_tenant),
            "--run",
            secrets.token_hex(3),
        ),
        timeout=seconds + GRACE_SECONDS + 120,
    )


async def warm_up(urls: list[str]) -> None:
    """Open and close a few sockets so one-time allocations are not counted per socket."""
    async with aiohttp.ClientSession() as session:
        for url in urls:
            async with session.ws_connect(url) as ws:
                await ws.receive(timeout=30)


def fanout(results: dict[str, Any], start: float, end: float = math.inf) -> dict[str, Any]:
    """Latencies of the frames whose event was made within [start, end)."""
    from_created, from_sent = [], []
    for made, got, sent in zip(
        results["created"], results["received"], results["sent"], strict=True
    ):
        if not start <= made < end:
            continue
        from_created.append(got - made)
        if sent is not None and not math.isnan(sent):  # NaN travels as null
            from_sent.append(got - sent)
    return {
        "frames": len(from_created),
        "from_created": latency_ms(from_created),
        "from_sent": latency_ms(from_sent),
    }


Load = Callable[[float], Awaitable[dict[str, Any]]]
"""Produce events at the given rate for the plan's seconds; report when it started."""


async def measure(
    server: Process, urls: list[str], plan: Plan, load: Load, *, after: Any = None
) -> dict[str, Any]:
    """Connect every socket (RSS before/after), run `load` at each of the plan's rates,
    collect the frames; then, sockets still open, `after(run)` (e.g. a profile)."""
    await warm_up(urls[: min(20, len(urls))])
    await asyncio.sleep(0.5)
    before = rss_kib(server.pid)
    clients = Clients(urls, plan.client_processes, plan.connect_concurrency)
    try:
        connected = await clients.start()
        await asyncio.sleep(1.0)
        connected_rss = rss_kib(server.pid)
        loads = []
        for _, rate in plan.passes:
            loads.append(await load(rate))
            await asyncio.sleep(3.0)  # let the last frames land
        frames = await clients.dump()
        ends = [loaded["started"] for loaded in loads[1:]] + [math.inf]
        passes = {
            name: {"rate": rate, "load": loaded, "fanout": fanout(frames, loaded["started"], end)}
            for (name, rate), loaded, end in zip(plan.passes, loads, ends, strict=True)
        }
        run = {
            **connected,
            "rss_before_kib": before,
            "rss_connected_kib": connected_rss,
            "rss_after_load_kib": rss_kib(server.pid),
            "rss_per_socket_kib": round(
                (connected_rss - before) / max(connected["connected"], 1), 2
            ),
            "closed_early": frames["closes"],
            "passes": passes,
        }
        if after is not None:
            await after(run)
        await clients.stop()
    finally:
        await clients.kill()
    return run


def missed_cpu_targets(plan: Plan, run: dict[str, Any]) -> bool:
    """Fan-out or ingest rate short of its target: what a CPU profile can explain."""
    main = run["passes"]["main"]
    p99 = main["fanout"]["from_created"]["p99_ms"]
    return p99 is None or p99 > 50 or main["load"]["acked_per_second"] < 0.95 * plan.rate


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    fd_limit = raise_fd_limit()
    plan = Plan(
        sockets=args.sockets,
        per_tenant=args.sockets_per_tenant,
        rate=args.rate,
        extra_rate=args.extra_rate,
        seconds=args.seconds,
        client_processes=args.client_processes,
        contacts_per_tenant=args.contacts_per_tenant,
        connect_concurrency=args.connect_concurrency,
    )
    web_env = {"GUICHE_WS_MAX_CONNECTIONS_PER_TENANT": str(max(plan.per_tenant, 2000))}
    profile: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    async with guiche_stack(
        args.server_url, args.redis_url, log_level=args.log_level, web_env=web_env
    ) as stack:
        environment = await environment_facts(stack.database_url, stack.redis_url)
        world = await populate(stack, plan)

        async def guiche_load(rate: float) -> dict[str, Any]:
            return await send(stack, world, plan, rate, plan.seconds)

        async def profile_if_short(run: dict[str, Any]) -> None:
            if not wants_profile(args.profile, missed_cpu_targets(plan, run)):
                return
            spy = asyncio.create_task(py_spy(stack.web.pid, args.profile_seconds))
            await send(stack, world, plan, plan.rate, args.profile_seconds + 2)
            found = await spy
            profile.update(found.as_dict() | {"table": profile_table(found)})

        try:
            guiche_run = await measure(
                stack.web, world.urls, plan, guiche_load, after=profile_if_short
            )
        finally:
            world.spec_file.unlink(missing_ok=True)
        if wants_profile(args.profile, guiche_run["rss_per_socket_kib"] > 20):
            sockets = min(plan.sockets, args.memory_profile_sockets)
            memory = await memory_profile(stack, world, plan, sockets)
        bare_run = await measure_bare(plan)
    report = build_report(args, plan, guiche_run, bare_run, environment, fd_limit, world.tenants)
    if profile:
        report["profile"] = profile
    if memory:
        report["memory_profile"] = memory
    return report


async def measure_bare(plan: Plan) -> dict[str, Any]:
    """The ceiling: the same sockets, groups, rates and frame size on a bare aiohttp server."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = python_module("bench.ws", "--role", "bare", "--port", str(port))
    async with running("bare-ws", argv, ready_url=f"{base}/health") as bare:
        ws_base = base.replace("http://", "ws://", 1)
        urls = [f"{ws_base}/ws?group=g{k // plan.per_tenant}" for k in range(plan.sockets)]

        async def publish(rate: float) -> dict[str, Any]:
            timeout = aiohttp.ClientTimeout(total=plan.seconds + 120)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                url = f"{base}/publish?rate={rate}&seconds={plan.seconds}"
                async with session.post(url) as response:
                    result: dict[str, Any] = await response.json()
            result["acked_per_second"] = per_second(result["acked"], result["elapsed_s"])
            return result

        return await measure(bare, urls, plan, publish)


def build_report(
    args: argparse.Namespace,
    plan: Plan,
    guiche: dict[str, Any],
    bare: dict[str, Any],
    environment: dict[str, Any],
    fd_limit: int,
    tenants: int,
) -> dict[str, Any]:
    def pass_figures(one: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        fan, load = one["fanout"], one["load"]
        return {
            f"{prefix}fanout_p50_ms": fan["from_created"]["p50_ms"],
            f"{prefix}fanout_p99_ms": fan["from_created"]["p99_ms"],
            f"{prefix}fanout_max_ms": fan["from_created"]["max_ms"],
            f"{prefix}frames_received": fan["frames"],
            f"{prefix}frames_expected": load["acked"] * plan.per_tenant,
            f"{prefix}ingest_acked_per_second": load["acked_per_second"],
        }

    def figures_of(run: dict[str, Any]) -> dict[str, Any]:
        out = {
            "sockets_connected": run["connected"],
            "sockets_failed": run["failed"],
            "connect_seconds": run["connect_seconds"],
            "rss_per_socket_kib": run["rss_per_socket_kib"],
            "rss_before_mib": round(run["rss_before_kib"] / 1024, 1),
            "rss_connected_mib": round(run["rss_connected_kib"] / 1024, 1),
            "rss_after_load_mib": round(run["rss_after_load_kib"] / 1024, 1),
            "sockets_closed_early": sum(run["closed_early"].values()),
            **pass_figures(run["passes"]["main"]),
        }
        if "extra" in run["passes"]:
            out |= pass_figures(run["passes"]["extra"], "extra_")
        return out

    def sender_figures(one: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        load = one["load"]
        return {
            f"{prefix}post_to_receipt_p50_ms": one["fanout"]["from_sent"]["p50_ms"],
            f"{prefix}post_to_receipt_p99_ms": one["fanout"]["from_sent"]["p99_ms"],
            f"{prefix}ingest_ack_p50_ms": load["ack"]["p50_ms"],
            f"{prefix}ingest_ack_p99_ms": load["ack"]["p99_ms"],
            f"{prefix}ingest_errors": sum(load["errors"].values()),
            f"{prefix}ingest_abandoned": load["abandoned"],
        }

    figures = figures_of(guiche) | sender_figures(guiche["passes"]["main"])
    if "extra" in guiche["passes"]:
        figures |= sender_figures(guiche["passes"]["extra"], "extra_")
    figures["closes_by_code"] = guiche["closed_early"]
    ceiling = figures_of(bare)
    ratios = {
        "rss_per_socket_vs_bare": ratio(
            figures["rss_per_socket_kib"], ceiling["rss_per_socket_kib"]
        ),
        "fanout_p99_vs_bare": ratio(figures["fanout_p99_ms"], ceiling["fanout_p99_ms"]),
    }
    if "extra_fanout_p99_ms" in figures:
        ratios["extra_fanout_p99_vs_bare"] = ratio(
            figures["extra_fanout_p99_ms"], ceiling["extra_fanout_p99_ms"]
        )
    parameters = {
        "sockets": plan.sockets,
        "sockets_per_tenant": plan.per_tenant,
        "tenants": tenants,
        "rate_messages_per_second": plan.rate,
        "extra_rate_messages_per_second": plan.extra_rate,
        "seconds_per_rate": plan.seconds,
        "client_processes": plan.client_processes,
        "contacts_per_tenant": plan.contacts_per_tenant,
        "fd_limit": fd_limit,
        "smoke": args.smoke,
        "guiche_log_level": args.log_level,
        "server": "guiche web (1 process) with Redis: events go through Redis pub/sub",
        "sockets_are": "role agent, one department per company, token in ?token=",
        "ceiling": "bare aiohttp WebSocket server: same groups, rate and frame size, "
        "no auth, database or Redis",
    }
    notes = [
        "fan-out latency: receipt − the event's created_at, which Postgres sets at the start "
        "of the ingest transaction: an upper bound on commit → receipt",
        "post_to_receipt: receipt − the time the sender posted the webhook (stamped in the text)",
        "each message is one webhook; every agent of its company sees the queued conversation",
        "RSS per socket = (VmRSS with every socket open − VmRSS before) / sockets",
        "clients, sender, guiche web, Postgres and Redis share this machine's CPUs",
    ]
    return make_report(
        "ws",
        parameters=parameters,
        figures=figures,
        ceiling=ceiling,
        ratios=ratios,
        targets=targets_for(plan.rate),
        environment=environment,
        notes=notes,
    )


def table(report: dict[str, Any]) -> str:
    f, c, p = report["figures"], report["ceiling"], report["parameters"]
    rate, extra = p["rate_messages_per_second"], p["extra_rate_messages_per_second"]
    keys = [
        ("sockets connected", "sockets_connected"),
        ("RSS per socket KiB", "rss_per_socket_kib"),
        ("RSS connected MiB", "rss_connected_mib"),
        ("sockets closed early", "sockets_closed_early"),
    ]
    for prefix, at in (("", rate), ("extra_", extra)):
        if f"{prefix}fanout_p99_ms" not in f:
            continue
        keys += [
            (f"@{at:g}/s asked: events/s made", f"{prefix}ingest_acked_per_second"),
            (f"@{at:g}/s: fan-out p50 ms", f"{prefix}fanout_p50_ms"),
            (f"@{at:g}/s: fan-out p99 ms", f"{prefix}fanout_p99_ms"),
            (f"@{at:g}/s: fan-out max ms", f"{prefix}fanout_max_ms"),
            (f"@{at:g}/s: frames received", f"{prefix}frames_received"),
            (f"@{at:g}/s: frames expected", f"{prefix}frames_expected"),
        ]
    text = format_table(
        ("", "guiche web", "bare aiohttp"), [(label, f[key], c.get(key)) for label, key in keys]
    )
    for prefix, at in (("", rate), ("extra_", extra)):
        if f"{prefix}post_to_receipt_p99_ms" in f:
            due = prefix + "post_to_receipt"
            text += (
                f"\n@{at:g}/s: webhook due → frame received p50 {f[due + '_p50_ms']}"
                f" ms, p99 {f[due + '_p99_ms']} ms; webhook ack p99"
                f" {f[prefix + 'ingest_ack_p99_ms']} ms; errors {f[prefix + 'ingest_errors']},"
                f" abandoned {f[prefix + 'ingest_abandoned']}"
            )
    if "profile" in report:
        text += f"\n\nprofile (guiche web at {rate:g}/s asked):\n" + report["profile"]["table"]
    if "memory_profile" in report:
        text += "\n\nmemory per socket (tracemalloc):\n" + report["memory_profile"]["table"]
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__ or "ws benchmark")
    parser.add_argument(
        "--role", choices=("bench", "client", "sender", "bare", "traced-web"), default="bench"
    )
    parser.add_argument("--sockets", type=int, help="WebSockets to hold (default 5,000)")
    parser.add_argument("--sockets-per-tenant", type=int, default=10)
    parser.add_argument("--rate", type=float, help="webhooks (messages) per second (default 500)")
    parser.add_argument(
        "--extra-rate",
        type=float,
        help="a second pass at this rate, one the server sustains (default 100; 0: none)",
    )
    parser.add_argument("--seconds", type=float, help="how long each rate runs (default 10)")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--contacts-per-tenant", type=int, default=20)
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--profile-seconds", type=float, default=8.0)
    parser.add_argument(
        "--memory-profile-sockets",
        type=int,
        default=500,
        help="sockets on the tracemalloc'ed server when memory per socket is profiled",
    )
    # helper roles
    parser.add_argument("--urls-file", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    parser.add_argument("--spec-file", help=argparse.SUPPRESS)
    parser.add_argument("--web-url", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--snapshot-prefix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    small = args.smoke
    args.sockets = args.sockets or (20 if small else 5_000)
    args.rate = args.rate or (20.0 if small else 500.0)
    args.seconds = args.seconds or (1.0 if small else 10.0)
    if args.extra_rate is None:
        args.extra_rate = 10.0 if small else 100.0
    if small:
        args.sockets_per_tenant = min(args.sockets_per_tenant, 5)
        args.client_processes = min(args.client_processes, 1)
        args.profile_seconds = min(args.profile_seconds, 1.0)
        args.profile = "never" if args.profile == "auto" else args.profile
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.role == "client":
        asyncio.run(client_main(args))
    elif args.role == "sender":
        asyncio.run(sender_main(args))
    elif args.role == "bare":
        bare_main(args)
    elif args.role == "traced-web":
        sys.exit(traced_web_main(args))
    else:
        with bench_lock(not args.no_lock):
            report = asyncio.run(bench(args))
        emit(report, table(report), json_out=args.json_out)


if __name__ == "__main__":
    main()
