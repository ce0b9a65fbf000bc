"""A socket's send queue: frames in order behind the `ready` frame, a writer task only
while frames wait, and the slow-consumer rule (a full queue drops the socket)."""

from __future__ import annotations

import asyncio
import gc
import uuid
from typing import Any

import orjson

from guiche.auth.principal import Principal
from guiche.auth.visibility import Viewer
from guiche.websocket.hub import CLOSE_TOO_SLOW, HUB, Connection, Hub
from guiche.websocket.ws import Session

from .conftest import connect


class FakeSocket:
    """Stands in for aiohttp's WebSocketResponse: records frames; `gate` holds sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed_with: int | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def send_frame(self, frame: bytes, opcode: Any) -> None:
        await self.gate.wait()
        self.sent.append(orjson.loads(frame))

    async def close(self, *, code: int, message: bytes) -> bool:
        self.closed_with = code
        return True


def make_connection(hub: Hub) -> tuple[Connection, FakeSocket]:
    tenant_id = uuid.uuid4()
    principal = Principal(tenant_id=tenant_id, role="agent", permissions=frozenset())
    viewer = Viewer(
        tenant_id=tenant_id,
        user_id=None,
        all=True,
        departments_in_full=False,
        departments=frozenset(),
    )
    ws = FakeSocket()
    conn = hub.connect(ws, None, principal, viewer)  # type: ignore[arg-type]
    assert conn is not None
    return conn, ws


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_frames_wait_for_ready_then_go_in_order_and_the_writer_ends_when_idle():
    hub = Hub(max_per_tenant=10, queue_size=10)
    conn, ws = make_connection(hub)
    conn.send({"type": "early"})  # queued between registration and `ready`
    await settle()
    assert ws.sent == [] and conn.pending == 1

    conn.start({"type": "ready"})
    conn.send({"type": "after"})
    await settle()

    assert [f["type"] for f in ws.sent] == ["ready", "early", "after"]
    assert conn.pending == 0 and conn._writer is None  # nothing held while idle
    conn.send({"type": "later"})
    await settle()
    assert ws.sent[-1] == {"type": "later"}
    await conn.finish()


async def test_a_full_queue_drops_the_socket_with_4408_and_refuses_more():
    hub = Hub(max_per_tenant=10, queue_size=3)
    drops: list[int] = []
    hub.on_slow_drop = lambda: drops.append(1)
    conn, ws = make_connection(hub)
    ws.gate.clear()  # the client stopped reading: the first send never completes
    conn.start({"type": "ready"})
    await settle()  # the writer took `ready` and is stuck sending it

    accepted = [conn.offer(b'{"type": "n"}') for _ in range(3)]
    overflow = conn.offer(b'{"type": "n"}')
    await conn.finish()

    assert accepted == [True, True, True] and overflow is False
    assert conn.close_code == CLOSE_TOO_SLOW and ws.closed_with == CLOSE_TOO_SLOW
    assert drops == [1] and hub.count(conn.tenant_id) == 0
    assert conn.offer(b"{}") is False and conn.pending == 0


async def test_a_closed_socket_leaves_no_reference_cycle_of_ours(client, make_company):
    """What `gc_tuning` relies on: a socket's own state (connection, session, principal,
    viewer) is freed by reference counting when the socket closes, never left to the
    cyclic collector (aiohttp's request objects are, and that is why sockets are never
    frozen)."""
    company = await make_company()
    socket = await connect(client, company.owner)
    hub = client.app[HUB]
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await socket.ws.close()
        for _ in range(100):
            if not hub.count(company.tenant_id):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)  # the handler's last step (`finish`) completes
        gc.collect()
        ours = [o for o in gc.garbage if isinstance(o, Connection | Session | Principal | Viewer)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()

    assert hub.count(company.tenant_id) == 0
    assert ours == []
