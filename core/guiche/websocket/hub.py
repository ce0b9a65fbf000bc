"""The WebSocket hub: one per web process, fanning bus events out to the sockets allowed them.

Every socket has a bounded queue of frames and, while frames wait, one writer task.
Fan-out only appends a frame (serialized once per event) to the queues of the sockets
that may see it, so it never waits on a network write; a socket whose queue is full is
too slow and is dropped (close code 4408) without delaying anyone else. Limits are per process: the
connection cap counts this process's sockets of a company.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections import deque
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from guiche.auth.principal import Principal
from guiche.auth.visibility import Viewer
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
WRITER_NAME = "guiche-ws-writer"
_NONE_JOINED: frozenset[uuid.UUID] = frozenset()
CLOSER_NAME = "guiche-ws-close"


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
    """One authenticated socket: who is behind it, what it joined, and its pending frames.

    Slotted, and lean while idle: the deque of pending frames and the writer task exist
    only while frames wait (a socket spends most of its life with nothing to send, and
    at 10,000 sockets every object per socket counts, in memory and in the work of each
    full garbage collection). No reference cycle outlives the socket: the writer and the
    expiry timer are dropped when they end, so a closed socket is freed by reference
    counting alone (see `guiche.foundation.gc_tuning`).
    """

    __slots__ = (
        "_closer",
        "_expiry",
        "_frames",
        "_hub",
        "_joined",
        "_started",
        "_writer",
        "close_code",
        "id",
        "principal",
        "transport",
        "viewer",
        "ws",
    )

    def __init__(
        self,
        hub: Hub,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        principal: Principal,
        viewer: Viewer,
    ) -> None:
        self.id = uuid.uuid4()
        self.ws = ws
        self.transport = transport  # to cut a client that stopped reading
        self.principal = principal
        self.viewer = viewer
        self._joined: set[uuid.UUID] | None = None  # most sockets never join one
        self.close_code: int | None = None
        self._hub = hub
        self._frames: deque[bytes] | None = None  # encoded frames not yet handed to aiohttp
        self._started = False
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
    def joined(self) -> AbstractSet[uuid.UUID]:
        """The conversations this socket marked as open on screen."""
        return self._joined if self._joined is not None else _NONE_JOINED

    @property
    def closing(self) -> bool:
        return self._closer is not None

    @property
    def pending(self) -> int:
        """Frames queued and not yet handed to the socket."""
        return len(self._frames) if self._frames is not None else 0

    def start(self, first_frame: dict[str, Any]) -> None:
        """Begin writing: `first_frame`, then what was queued since registration, then live.

        Registering before the client is told `ready` (and its `last_seq`) leaves no gap
        between the event log and the live stream; frames queue meanwhile. The first
        frame goes through the queue like any other, so nothing keeps its buffer (orjson
        returns a 4 KiB one even for a 300-byte document) once it is sent.
        """
        if self._started or self._closer is not None:
            return
        self._started = True
        if self._frames is None:
            self._frames = deque()
        self._frames.appendleft(encode(first_frame))
        self._wake()

    def send(self, frame: dict[str, Any]) -> bool:
        """Queue a frame for this socket alone (acks, errors, typing)."""
        return self.offer(encode(frame))

    def offer(self, frame: bytes) -> bool:
        """Queue an encoded frame; a full queue means the client fell behind: drop it."""
        if self._closer is not None:
            return False
        frames = self._frames
        if frames is None:
            frames = self._frames = deque()
        elif len(frames) >= self._hub.queue_size:
            log.warning(
                "dropping slow WebSocket",
                extra={"tenant": str(self.tenant_id), "connection": str(self.id)},
            )
            self.close(CLOSE_TOO_SLOW, "too slow")
            return False
        frames.append(frame)
        self._wake()
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
        self._closer = asyncio.create_task(self._shutdown(code, reason), name=CLOSER_NAME)
        if self._expiry is not None:
            self._expiry.cancel()  # a cancelled handle lets go of its callback: no cycle
            self._expiry = None
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None  # its CancelledError's traceback refers back to us
        self._frames = None
        self._hub._forget(self)

    async def finish(self) -> None:
        """The handler's last step: make sure the socket is closed and forgotten."""
        self.close(CLOSE_GOING_AWAY, "closed")
        closer = self._closer
        assert closer is not None
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(closer)

    def _wake(self) -> None:
        if self._writer is None and self._started:
            self._writer = asyncio.create_task(self._write(), name=WRITER_NAME)

    async def _write(self) -> None:
        """Send queued frames in order; end (and let the task go) once none are left."""
        frames = self._frames
        try:
            while frames:
                await self.ws.send_frame(frames.popleft(), WSMsgType.TEXT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer is gone: nothing more can be sent
            log.info("WebSocket send failed: %r", exc)
            self.close(CLOSE_SEND_FAILED, "send failed")
            return
        # Nothing was awaited since the last check: no frame can have arrived meanwhile.
        self._writer = None
        self._frames = None

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
        open_now = self.connections()
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
        conn = Connection(self, ws, transport, principal, viewer)
        sockets.add(conn)
        return conn

    def _forget(self, conn: Connection) -> None:
        if conn.close_code == CLOSE_TOO_SLOW and self.on_slow_drop is not None:
            self.on_slow_drop()
        _discard(self._tenants, conn.tenant_id, conn)
        for conversation_id in conn.joined:
            _discard(self._conversations, conversation_id, conn)
        conn._joined = None

    def join(self, conn: Connection, conversation_id: uuid.UUID) -> None:
        if conn.closing:
            return
        if conn._joined is None:
            conn._joined = set()
        conn._joined.add(conversation_id)
        self._conversations.setdefault(conversation_id, set()).add(conn)

    def leave(self, conn: Connection, conversation_id: uuid.UUID) -> None:
        if conn._joined is not None:
            conn._joined.discard(conversation_id)
        _discard(self._conversations, conversation_id, conn)

    def count(self, tenant_id: uuid.UUID) -> int:
        return len(self._tenants.get(tenant_id, ()))

    @property
    def total(self) -> int:
        return sum(len(sockets) for sockets in self._tenants.values())

    def connections(self) -> list[Connection]:
        """Every open socket of this process."""
        return [conn for sockets in self._tenants.values() for conn in sockets]

    def connections_of(self, user_id: uuid.UUID) -> list[Connection]:
        """A user's sockets here, in any company (a scan: session changes are rare)."""
        return [conn for conn in self.connections() if conn.user_id == user_id]

    def user_connections(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> frozenset[Connection]:
        """A user's sockets here (a scan of the company's: no per-user index to keep)."""
        return frozenset(c for c in self._tenants.get(tenant_id, ()) if c.user_id == user_id)

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
