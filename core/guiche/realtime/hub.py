"""The WebSocket hub: one per web process, fanning bus events out to the sockets allowed them.

Every socket has a bounded queue and one writer task. Fan-out only appends a frame
(serialized once per event) to the queues of the sockets that may see it, so it never
waits on a network write; a socket whose queue is full is too slow and is dropped
(close code 4408) without delaying anyone else. Limits are per process: the
connection cap counts this process's sockets of a company.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from guiche.auth.principal import Principal
from guiche.conversations.visibility import Viewer
from guiche.realtime.bus import EventBus
from guiche.realtime.events import (
    CHANNEL_STATE,
    CONVERSATION_UPDATED,
    OPERATOR_STATUS,
    BusEvent,
    PendingEvent,
)

log = logging.getLogger("guiche.realtime")

#: Events about the company rather than a conversation: every socket of it gets them.
TENANT_WIDE = frozenset({OPERATOR_STATUS, CHANNEL_STATE})

CLOSE_TOO_SLOW = 4408
CLOSE_GOING_AWAY = 1001
CLOSE_SEND_FAILED = 1011
#: How long a close handshake may take before the connection is simply cut.
CLOSE_TIMEOUT_SECONDS = 5.0


def event_visible(viewer: Viewer, event: PendingEvent) -> bool:
    """The one rule for WebSocket fan-out and `GET /api/v1/events`.

    Only `conversation.updated` carries the conversation's status in `data.status`
    (in message events it is the message's delivery status), so other conversation
    events are judged by department and assignee alone.
    """
    if event.tenant_id != viewer.tenant_id:
        return False
    if event.type in TENANT_WIDE:
        return True
    status = event.data.get("status") if event.type == CONVERSATION_UPDATED else None
    return viewer.can_see(
        department_id=event.department_id,
        assignee_id=event.assignee_id,
        status=status if isinstance(status, str) else None,
    )


def encode(frame: dict[str, Any]) -> bytes:
    return orjson.dumps(frame, default=str)


class Connection:
    """One authenticated socket: who is behind it, what it joined, and its send queue."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        principal: Principal,
        viewer: Viewer,
        *,
        queue_size: int,
        on_close: Callable[[Connection], None],
    ) -> None:
        self.id = uuid.uuid4()
        self.ws = ws
        self.principal = principal
        self.viewer = viewer
        self.joined: set[uuid.UUID] = set()
        self.close_code: int | None = None
        self.transport = transport  # to cut a client that stopped reading
        self._on_close = on_close
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.principal.tenant_id

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.principal.user_id

    @property
    def closing(self) -> bool:
        return self._closer is not None

    def start(self, first_frame: dict[str, Any]) -> None:
        """Begin writing: `first_frame`, then what was queued since registration, then live.

        Registering before the client is told `ready` (and its `last_seq`) leaves no gap
        between the event log and the live stream; frames queue meanwhile.
        """
        if self._writer is None and self._closer is None:
            self._writer = asyncio.create_task(
                self._write(encode(first_frame)), name=f"guiche-ws-writer-{self.id}"
            )

    def send(self, frame: dict[str, Any]) -> bool:
        """Queue a frame for this socket alone (acks, errors, typing)."""
        return self.offer(encode(frame))

    def offer(self, frame: bytes) -> bool:
        """Queue an encoded frame; a full queue means the client fell behind: drop it."""
        if self._closer is not None:
            return False
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning(
                "dropping slow WebSocket",
                extra={"tenant": str(self.tenant_id), "connection": str(self.id)},
            )
            self.close(CLOSE_TOO_SLOW, "too slow")
            return False
        return True

    def expire_at(self, when: dt.datetime | None) -> None:
        """Close with 4401 when the access token that opened the socket expires."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if when is None or self._closer is not None:
            return
        delay = max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(delay, self.close, 4401, "token expired")

    def close(self, code: int, reason: str) -> None:
        """Stop sending and close in the background; safe to call more than once."""
        if self._closer is not None:
            return
        self.close_code = code
        self._closer = asyncio.create_task(
            self._shutdown(code, reason), name=f"guiche-ws-close-{self.id}"
        )
        if self._expiry is not None:
            self._expiry.cancel()
        if self._writer is not None:
            self._writer.cancel()
        self._on_close(self)

    async def finish(self) -> None:
        """The handler's last step: make sure the socket is closed and forgotten."""
        self.close(CLOSE_GOING_AWAY, "closed")
        assert self._closer is not None
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._closer)

    async def _write(self, first_frame: bytes) -> None:
        try:
            await self.ws.send_frame(first_frame, WSMsgType.TEXT)
            while True:
                frame = await self._queue.get()
                await self.ws.send_frame(frame, WSMsgType.TEXT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer is gone: nothing more can be sent
            log.info("WebSocket send failed: %r", exc)
            self.close(CLOSE_SEND_FAILED, "send failed")

    async def _shutdown(self, code: int, reason: str) -> None:
        closing = asyncio.ensure_future(self.ws.close(code=code, message=reason.encode()))
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT_SECONDS)
        if not done:
            closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
        transport = self.transport
        if transport is None or not transport.get_write_buffer_size():
            return
        # Bytes still wait for a client that is not reading; a graceful close would hold
        # them (and the connection) until it reads. Too slow: cut now, it will resync.
        if code == CLOSE_TOO_SLOW or not done:
            transport.abort()
        else:
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_SECONDS, _cut_if_stuck, transport)


def _cut_if_stuck(transport: asyncio.Transport) -> None:
    if transport.get_write_buffer_size():
        transport.abort()


class Hub:
    """This process's sockets, indexed by tenant, user and joined conversation."""

    def __init__(self, *, max_per_tenant: int, queue_size: int) -> None:
        self.max_per_tenant = max_per_tenant
        self.queue_size = queue_size
        self.on_slow_drop: Callable[[], None] | None = None  # a metrics counter, if any
        self._tenants: dict[uuid.UUID, set[Connection]] = {}
        self._users: dict[tuple[uuid.UUID, uuid.UUID], set[Connection]] = {}
        self._conversations: dict[uuid.UUID, set[Connection]] = {}
        self._unsubscribe: Callable[[], None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def attach(self, bus: EventBus) -> None:
        """Start receiving the process's bus events (after the bus is open)."""
        self.detach()
        self._unsubscribe = bus.subscribe(self.deliver)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def close_all(
        self, code: int = CLOSE_GOING_AWAY, reason: str = "server stopping"
    ) -> None:
        """Close every socket (shutdown), so the server does not wait on open connections."""
        open_now = [conn for sockets in self._tenants.values() for conn in sockets]
        for conn in open_now:
            conn.close(code, reason)
        await asyncio.gather(*(conn.finish() for conn in open_now))

    # --- membership ---------------------------------------------------------------------

    def connect(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        principal: Principal,
        viewer: Viewer,
    ) -> Connection | None:
        """Register a socket; None when its company already has the maximum open here."""
        sockets = self._tenants.setdefault(principal.tenant_id, set())
        if len(sockets) >= self.max_per_tenant:
            return None
        conn = Connection(
            ws, transport, principal, viewer, queue_size=self.queue_size, on_close=self._forget
        )
        sockets.add(conn)
        if conn.user_id is not None:
            self._users.setdefault((conn.tenant_id, conn.user_id), set()).add(conn)
        return conn

    def _forget(self, conn: Connection) -> None:
        if conn.close_code == CLOSE_TOO_SLOW and self.on_slow_drop is not None:
            self.on_slow_drop()
        _discard(self._tenants, conn.tenant_id, conn)
        if conn.user_id is not None:
            _discard(self._users, (conn.tenant_id, conn.user_id), conn)
        for conversation_id in conn.joined:
            _discard(self._conversations, conversation_id, conn)
        conn.joined.clear()

    def join(self, conn: Connection, conversation_id: uuid.UUID) -> None:
        if conn.closing:
            return
        conn.joined.add(conversation_id)
        self._conversations.setdefault(conversation_id, set()).add(conn)

    def leave(self, conn: Connection, conversation_id: uuid.UUID) -> None:
        conn.joined.discard(conversation_id)
        _discard(self._conversations, conversation_id, conn)

    def count(self, tenant_id: uuid.UUID) -> int:
        return len(self._tenants.get(tenant_id, ()))

    @property
    def total(self) -> int:
        return sum(len(sockets) for sockets in self._tenants.values())

    def user_connections(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> frozenset[Connection]:
        return frozenset(self._users.get((tenant_id, user_id), ()))

    # --- fan-out ------------------------------------------------------------------------

    def deliver(self, event: BusEvent) -> None:
        """The bus listener: queue the event for the company's sockets that may see it.

        Synchronous on purpose: it only appends to queues, so the publisher (a webhook,
        the Redis reader) never waits on a client.
        """
        sockets = self._tenants.get(event.tenant_id)
        if not sockets:
            return
        frame: bytes | None = None
        for conn in list(sockets):
            if event_visible(conn.viewer, event):
                if frame is None:
                    frame = encode(event.wire())
                conn.offer(frame)
            elif event.conversation_id in conn.joined and event.type == CONVERSATION_UPDATED:
                # Transferred or closed out of this viewer's reach: say so without the details.
                self.leave(conn, event.conversation_id)
                conn.send(
                    {
                        "type": "conversation.left",
                        "conversation_id": event.conversation_id,
                        "reason": "access_lost",
                    }
                )

    def relay(
        self,
        sender: Connection,
        conversation_id: uuid.UUID,
        frame: dict[str, Any],
        *,
        department_id: uuid.UUID | None,
        assignee_id: uuid.UUID | None,
        status: str | None,
    ) -> int:
        """Send an ephemeral frame (typing) to other people's sockets that joined the
        conversation and may still see it; returns how many got it."""
        encoded: bytes | None = None
        delivered = 0
        for conn in list(self._conversations.get(conversation_id, ())):
            if conn.tenant_id != sender.tenant_id or conn.user_id == sender.user_id:
                continue
            if not conn.viewer.can_see(
                department_id=department_id, assignee_id=assignee_id, status=status
            ):
                continue
            if encoded is None:
                encoded = encode(frame)
            if conn.offer(encoded):
                delivered += 1
        return delivered


def _discard(index: dict[Any, set[Connection]], key: Any, conn: Connection) -> None:
    sockets = index.get(key)
    if sockets is None:
        return
    sockets.discard(conn)
    if not sockets:
        del index[key]


HUB = web.AppKey("guiche.hub", Hub)
