"""The issue's whole loop across a scaled-out deployment on Redis: real processes only.

`web` A, `web` B and a `worker` run as subprocesses of `_app_process.py` (the real app
and worker, plus the fake channel plugin) on this session's database, one Redis and a
task stream of this test's own. The outside world is a stand-in provider the test
serves: the channel adapter POSTs each send there and gets a provider id back.

Hops: webhook into A → socket on B hears the message and the assignment → reply via
REST on A → the worker (and only it) calls the provider → `sent` on B's socket →
`read` status webhook into B → `read` on B's socket.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from guiche.outbound.service import SEND_TASK
from guiche.runtime.services import SERVICES
from tests.conftest import drop_task_queue

from ._app_process import PID_HEADER, PROVIDER_ENV
from .conftest import Feed, customer_message, post_signed, read_receipt

pytestmark = pytest.mark.redis

HOP_TIMEOUT = 60.0
"""Per hop of the loop: generous, for a loaded 2-core CI machine."""
STARTUP_TIMEOUT = 180.0
"""A fresh interpreter importing all of Guichê is slow on a loaded machine."""
STOP_TIMEOUT = 20.0
READY_POLL_SECONDS = 0.2
APP_PROCESS = Path(__file__).with_name("_app_process.py")


# --- the stand-in provider ---------------------------------------------------------------


@dataclass
class ProviderCall:
    pid: int
    message: dict[str, Any]
    provider_message_id: str


@dataclass
class StandInProvider:
    """The messaging provider as the outside world: records each send, answers an id."""

    url: str = ""
    calls: list[ProviderCall] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self, request: web.Request) -> web.Response:
        provider_message_id = f"prov.{uuid.uuid4().hex}"
        pid = int(request.headers.get(PID_HEADER, "0"))
        self.calls.append(ProviderCall(pid, await request.json(), provider_message_id))
        self.arrived.set()
        return web.json_response({"id": provider_message_id})

    async def wait_calls(self, count: int) -> list[ProviderCall]:
        async with asyncio.timeout(HOP_TIMEOUT):
            while len(self.calls) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.calls


@pytest.fixture
async def provider() -> AsyncIterator[StandInProvider]:
    stand_in = StandInProvider()
    app = web.Application()
    app.router.add_post("/messages", stand_in.receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        stand_in.url = f"http://127.0.0.1:{runner.addresses[0][1]}/messages"
        yield stand_in
    finally:
        await runner.cleanup()


# --- the processes -----------------------------------------------------------------------


@dataclass
class Child:
    """One subprocess; its merged stdout/stderr is kept for the failure report."""

    name: str
    proc: asyncio.subprocess.Process
    output: list[bytes] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None

    def log(self) -> str:
        return b"".join(self.output).decode(errors="replace")

    async def read_until(self, prefix: bytes) -> bytes:
        """Read lines until one starts with `prefix`; fail with the log if the child exits."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while True:
                line = await self.proc.stdout.readline()
                self.output.append(line)
                if not line:
                    pytest.fail(f"{self.name} exited early:\n{self.log()}")
                if line.startswith(prefix):
                    return line

    def keep_draining(self) -> None:
        """Keep reading its output, so the child never blocks on a full pipe."""
        assert self.proc.stdout is not None
        self.drain = asyncio.create_task(_collect(self.proc.stdout, self.output))

    async def alive_while(self, awaitable: Awaitable[Any], within: float) -> Any:
        """Await `awaitable`, failing at once (with the log) if this child dies meanwhile."""
        work = asyncio.ensure_future(awaitable)
        died = asyncio.ensure_future(self.proc.wait())
        try:
            done, _ = await asyncio.wait(
                {work, died}, timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            died.cancel()
        if work in done:
            return work.result()
        work.cancel()
        reason = "exited" if died in done else f"did not get there within {within:.0f} s"
        pytest.fail(f"{self.name} {reason}:\n{self.log()}")

    async def stop(self) -> None:
        """SIGTERM this pid, SIGKILL it if it lingers; then collect the rest of its output."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.drain is not None:
            await self.drain
        elif self.proc.stdout is not None:
            self.output.append(await self.proc.stdout.read())


async def _collect(stream: asyncio.StreamReader, into: list[bytes]) -> None:
    while line := await stream.readline():
        into.append(line)


@pytest.fixture
async def task_queue(require_redis: str) -> AsyncIterator[str]:
    """A task stream of this test's own; its Redis keys removed afterwards."""
    queue = f"guiche-test-e2e:{uuid.uuid4().hex[:12]}"
    yield queue
    await drop_task_queue(require_redis, queue)


@pytest.fixture
async def client(make_client: Any, require_redis: str, task_queue: str) -> Any:
    """The in-test app: sets up companies and kicks the worker's readiness no-op. Not part
    of the loop; it shares the database, Redis and task stream with the processes."""
    return await make_client(redis_url=require_redis, task_queue=task_queue)


@pytest.fixture
def child_env(
    database_url: str,
    require_redis: str,
    encryption_key: str,
    task_queue: str,
    settings: Any,
    provider: StandInProvider,
    tmp_path: Path,
) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": require_redis,
        "GUICHE_TASK_QUEUE": task_queue,
        "GUICHE_SECRET_KEY": settings.secret_key.get_secret_value(),
        "GUICHE_ENCRYPTION_KEYS": encryption_key,
        "GUICHE_HOST": "127.0.0.1",
        "GUICHE_DATA_DIR": str(tmp_path / "data"),
        "GUICHE_RATE_LIMIT_PER_MINUTE": "0",
        "GUICHE_LOG_JSON": "false",
        PROVIDER_ENV: provider.url,
    }


SpawnChild = Callable[[str, str], Awaitable[Child]]


@pytest.fixture
async def spawn(child_env: dict[str, str]) -> AsyncIterator[SpawnChild]:
    """Start `_app_process.py <mode>`; every child is stopped by pid at teardown."""
    children: list[Child] = []

    async def start(name: str, mode: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(APP_PROCESS),
            mode,
            env=child_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        child = Child(name, proc)
        children.append(child)
        return child

    try:
        yield start
    finally:
        await asyncio.gather(*(child.stop() for child in children), return_exceptions=True)
        for child in children:  # shown by pytest only when the test failed
            print(f"----- {child.name} (exit {child.proc.returncode}) -----\n{child.log()}")


async def web_ready(child: Child, http: aiohttp.ClientSession) -> str:
    """The web child's base URL once it listens and `/health/ready` says ok."""
    line = await child.read_until(b"READY ")
    child.keep_draining()
    base = f"http://127.0.0.1:{int(line.split()[1])}"

    async def ready() -> None:
        while True:
            try:
                async with http.get(f"{base}/health/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(READY_POLL_SECONDS)  # polling a readiness probe, by design

    await child.alive_while(ready(), STARTUP_TIMEOUT)
    return base


async def worker_ready(child: Child, client: Any) -> None:
    """Proof the worker consumes this stream: a no-op send (an unknown message id) that
    only a worker can answer, `skipped`."""
    queue = client.server.app[SERVICES].tasks
    kicked = await queue.kick(SEND_TASK, str(uuid.uuid4()))
    result = await child.alive_while(kicked.wait_result(timeout=STARTUP_TIMEOUT), STARTUP_TIMEOUT)
    assert result.return_value == "skipped", result


# --- the test ----------------------------------------------------------------------------


async def test_full_loop_two_web_processes_and_a_worker_on_redis(
    client: Any, make_desk: Any, provider: StandInProvider, spawn: SpawnChild
) -> None:
    desk = await make_desk()
    web_a, web_b = await spawn("web A", "web"), await spawn("web B", "web")
    worker = await spawn("worker", "worker")
    worker.keep_draining()  # it prints no readiness line: read its logs from the start

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HOP_TIMEOUT)) as http:
        base_a, base_b = await asyncio.gather(web_ready(web_a, http), web_ready(web_b, http))
        await worker_ready(worker, client)

        # The agent logs in on A; the token is honoured by B, where the socket lives.
        async with http.post(
            f"{base_a}/api/v1/auth/login",
            json={"email": desk.agent.email, "password": desk.agent.password},
        ) as resp:
            assert resp.status == 200, await resp.text()
            token = (await resp.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        feed = await Feed.open(await http.ws_connect(f"{base_b}/ws?token={token}"), HOP_TIMEOUT)

        # 1. Webhook into A: stored, opened, assigned; B's socket hears both.
        inbound = customer_message("Oi, pode me ajudar com a entrega?")
        ack = await post_signed(http, f"{base_a}{desk.channel.url}", messages=[inbound])
        assert (ack["messages"], ack["duplicates"]) == (1, 0)
        new = await feed.next("message.new", provider_message_id=inbound.provider_message_id)
        conversation_id = new["conversation_id"]
        assert (new["data"]["direction"], new["data"]["channel_id"]) == ("in", str(desk.channel.id))
        assigned = await feed.next(
            "conversation.updated", conversation_id=conversation_id, action="assigned"
        )
        assert assigned["data"]["assignee_id"] == str(desk.agent.user_id)
        async with http.get(
            f"{base_b}/api/v1/conversations/{conversation_id}", headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            conversation = await resp.json()
        assert (conversation["status"], conversation["assignee"]["id"]) == (
            "ACTIVE",
            str(desk.agent.user_id),
        )

        # 2. The agent replies via REST on A; B's socket hears the pending message.
        async with http.post(
            f"{base_a}/api/v1/conversations/{conversation_id}/messages",
            json={"type": "text", "text": "Claro! Qual o número do pedido?"},
            headers=headers,
        ) as resp:
            assert resp.status == 202, await resp.text()
            reply = await resp.json()
        reply_id = reply["id"]
        assert (reply["conversation_id"], reply["status"]) == (conversation_id, "pending")
        echo = await feed.next("message.new", id=reply_id)
        assert (echo["conversation_id"], echo["data"]["direction"]) == (conversation_id, "out")

        # 3. The worker process, and no web process, calls the provider; `sent` reaches B.
        [call] = await worker.alive_while(provider.wait_calls(1), HOP_TIMEOUT)
        assert call.pid == worker.proc.pid
        assert call.message["message_id"] == reply_id
        assert (call.message["kind"], call.message["text"]) == (
            "text",
            "Claro! Qual o número do pedido?",
        )
        sent = await feed.next("message.status", id=reply_id, status="sent")
        assert sent["conversation_id"] == conversation_id
        assert sent["data"]["provider_message_id"] == call.provider_message_id

        # 4. The provider's `read` receipt arrives at B; B's socket hears it.
        receipt = read_receipt(call.provider_message_id)
        ack = await post_signed(http, f"{base_b}{desk.channel.url}", statuses=[receipt])
        assert (ack["statuses"], ack["ignored"]) == (1, 0)
        read = await feed.next("message.status", id=reply_id, status="read")
        assert read["conversation_id"] == conversation_id
        assert read["data"]["provider_message_id"] == call.provider_message_id

        async with http.get(
            f"{base_a}/api/v1/conversations/{conversation_id}/messages", headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            stored = {item["id"]: item for item in (await resp.json())["items"]}
        assert stored[reply_id]["status"] == "read"
        assert len(provider.calls) == 1
        await feed.ws.close()
