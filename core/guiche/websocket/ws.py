"""`GET /ws`: the agents' real-time socket — authentication, then events out and commands in.

Authentication: `?token=<access token>` (a bad one is a 401 before the upgrade), an
`Authorization: Bearer` or `x-api-key` header, or else the first frame
`{"type": "auth", "token": ...}` within `ws_auth_timeout_seconds` (close 4401 otherwise).
The server then sends `{"type": "ready", ..., "last_seq"}`; events follow as
`event.wire()` frames, and a client that reconnects asks
`GET /api/v1/events?after=<last seq it saw>` for what it missed.

Commands are JSON frames `{"type", "id"?, ...}`, each answered by
`{"type": "ack", "id", "ok": true, ...}` or `{"type": "error", "id", "error": {...}}`:

- `ping` → `{"type": "pong"}` (the protocol-level heartbeat runs besides it).
- `auth` {token}: a fresh token for the same user and company before the old one
  expires (the socket closes with 4401 when it does); it also reloads the socket's
  visibility, e.g. after the user joined a department.
- `conversation.join` / `conversation.leave` {conversation_id}: mark a conversation as
  open on screen. Joining grants no visibility: every socket receives the events of
  the conversations it may see, joined or not; a joined socket additionally gets the
  conversation's `typing` frames, and `{"type": "conversation.left"}` if the
  conversation moves out of its reach (transfer, close), after which it is left.
- `message.send` {conversation_id, message: {type: text|media|template, ...} | text,
  idempotency_key?}: the same service as `POST /api/v1/conversations/{id}/messages`.
- `typing` {conversation_id}: relayed to the other users' sockets that joined the
  conversation and may see it; never stored, never sent to the customer.
- `presence` {status: online|away|offline}: the agent's availability; going online
  assigns queued conversations.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import WSMsgType, web
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from guiche.auth.access import USER_ACCESS, UserAccess, user_access
from guiche.auth.principal import Principal
from guiche.auth.tokens import InvalidToken, decode_access_token
from guiche.auth.visibility import Viewer, viewer_for
from guiche.foundation.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
    pydantic_details,
)
from guiche.models import Conversation, Event
from guiche.outbound.schemas import SendRequest, TextSend
from guiche.outbound.service import create_outbound
from guiche.realtime.bus import Notice, bus_channel
from guiche.routing.presence import (
    MemoryLeases,
    PresenceTracker,
    RedisLeases,
    set_presence,
)
from guiche.runtime.services import SERVICES, Services, services_of
from guiche.web.authentication import principal_for, resolve_principal, verified_claims
from guiche.web.middleware import error_answer
from guiche.web.observability import METRICS
from guiche.websocket.hub import HUB, Connection, Hub

log = logging.getLogger("guiche.realtime")

WS_PATH = "/ws"
READ_PERMISSION = "events.read"
MAX_FRAME_BYTES = 64 * 1024

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY = 4429

PRESENCE = web.AppKey("guiche.presence", PresenceTracker)


# --- authentication ---------------------------------------------------------------------


@dataclass(frozen=True)
class SocketAuth:
    principal: Principal
    expires_at: dt.datetime | None  # the access token's expiry; None for API keys


async def _token_auth(services: Services, token: str) -> SocketAuth:
    """Verify an access token (raises InvalidToken) the same way the REST API does."""
    verified = await verified_claims(services, token)
    return SocketAuth(principal_for(services, verified), verified.claims.expires_at)


async def _handshake_auth(request: web.Request, services: Services) -> SocketAuth | None:
    """Credentials sent with the upgrade request; None leaves it to the first frame."""
    token = _query_token(request)
    if token is not None:
        try:
            return await _token_auth(services, token.strip())
        except InvalidToken as exc:
            raise Unauthorized(str(exc), code="invalid_token") from None
    # No middleware runs for /ws (`guiche.web.middleware.stepping_aside`): the header
    # credentials are read here, the way the REST API's auth middleware reads them.
    principal = await resolve_principal(request)
    if principal is None:
        return None
    expires_at = None
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    if principal.kind == "user" and scheme.lower() == "bearer":
        expires_at = decode_access_token(services.settings, bearer.strip()).expires_at
    return SocketAuth(principal, expires_at)


def _query_token(request: web.Request) -> str | None:
    """`?token=`, parsed from the raw request line: `request.query` would keep a parsed
    copy of the token (and its MultiDict) in the request for the socket's whole life."""
    values = parse_qs(urlsplit(request.raw_path).query, keep_blank_values=True).get("token")
    return values[0] if values else None


async def _first_frame_auth(
    ws: web.WebSocketResponse, services: Services
) -> tuple[SocketAuth, Any] | None:
    """Wait for `{"type": "auth", "token"}`; close with 4401 (and None) on anything else."""
    try:
        msg = await ws.receive(timeout=services.settings.ws_auth_timeout_seconds)
    except TimeoutError:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"authentication timeout")
        return None
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
        return None
    frame = _json_object(msg.data) if msg.type is WSMsgType.TEXT else None
    token = frame.get("token") if frame is not None and frame.get("type") == "auth" else None
    if not isinstance(token, str):
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"authentication required")
        return None
    command_id = frame.get("id") if isinstance(frame.get("id"), str | int) else None
    try:
        return await _token_auth(services, token.strip()), command_id
    except InvalidToken as exc:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=str(exc).encode())
        return None


def _json_object(data: Any) -> dict[str, Any] | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# --- the route --------------------------------------------------------------------------


async def websocket(request: web.Request) -> web.StreamResponse:
    """The socket's whole life in this one frame: no middleware wraps `/ws`, so its
    failures before the upgrade are answered here, as JSON errors like the API's."""
    services = services_of(request)
    hub = request.app[HUB]
    try:
        auth = await _handshake_auth(request, services)
        if auth is not None and not auth.principal.can(READ_PERMISSION):
            raise Forbidden(f"Missing permission {READ_PERMISSION!r}", code="permission_denied")
        ws = web.WebSocketResponse(
            heartbeat=services.settings.ws_heartbeat_seconds,
            max_msg_size=MAX_FRAME_BYTES,
            # Per-socket deflate would undo the encode-once fan-out and cost memory per
            # socket.
            compress=False,
        )
        await ws.prepare(request)
    except Exception as exc:
        return error_answer(request, exc)
    ready_id: Any = None
    if auth is None:
        outcome = await _first_frame_auth(ws, services)
        if outcome is None:
            return ws
        auth, ready_id = outcome
        if not auth.principal.can(READ_PERMISSION):
            await ws.close(code=CLOSE_FORBIDDEN, message=b"missing permission events.read")
            return ws
    viewer = await viewer_for(auth.principal)
    conn = hub.connect(ws, request.transport, auth.principal, viewer)
    if conn is None:
        await ws.close(code=CLOSE_TOO_MANY, message=b"too many connections for this company")
        return ws
    session = Session(services, hub, conn)
    tracker = request.app[PRESENCE]
    user_id = auth.principal.user_id
    try:
        if user_id is not None:
            await tracker.opened(auth.principal.tenant_id, user_id)
        conn.expire_at(auth.expires_at)
        conn.start(await session.ready_frame(ready_id, auth.expires_at))
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await session.handle(msg.data)
            else:
                conn.send(_error(None, BadRequest("Send JSON text frames", code="invalid_frame")))
    finally:
        await conn.finish()
        if user_id is not None:
            tracker.closed(auth.principal.tenant_id, user_id)
    return ws


# --- commands ---------------------------------------------------------------------------


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | int | None = None


class Ping(_Command):
    type: Literal["ping"]


class Auth(_Command):
    type: Literal["auth"]
    token: str


class Join(_Command):
    type: Literal["conversation.join"]
    conversation_id: uuid.UUID


class Leave(_Command):
    type: Literal["conversation.leave"]
    conversation_id: uuid.UUID


class Typing(_Command):
    type: Literal["typing"]
    conversation_id: uuid.UUID


class SendMessage(_Command):
    """`message` is the REST body of `POST .../messages`; `text` is short for a text one."""

    type: Literal["message.send"]
    conversation_id: uuid.UUID
    message: SendRequest | None = None
    text: str | None = None
    idempotency_key: str | None = None

    @model_validator(mode="after")
    def _one_body(self) -> SendMessage:
        if (self.message is None) == (self.text is None):
            raise ValueError("give exactly one of message or text")
        return self


class Presence(_Command):
    type: Literal["presence"]
    status: Literal["online", "away", "offline"]


Result = dict[str, Any] | None


def _error(command_id: Any, exc: ApiError) -> dict[str, Any]:
    return {"type": "error", "id": command_id, **exc.body()}


class Session:
    """One socket's command handling: each command answered by an ack or an error.

    Slotted, with the command table on the class (`_COMMANDS`): a dict of bound methods
    per socket would cost memory and make the session a reference cycle.
    """

    __slots__ = ("conn", "hub", "services")

    def __init__(self, services: Services, hub: Hub, conn: Connection) -> None:
        self.services = services
        self.hub = hub
        self.conn = conn

    async def ready_frame(self, command_id: Any, expires_at: dt.datetime | None) -> dict[str, Any]:
        """Who the socket is, and `last_seq`: every later event reaches it live (read after
        registration, so at worst an event arrives twice; clients dedupe by seq)."""
        principal = self.conn.principal
        last_seq = await Event.raw(
            "SELECT coalesce(max(seq), 0) AS seq FROM events WHERE tenant = {}",
            principal.tenant_id,
        )
        return {
            "type": "ready",
            "id": command_id,
            "connection_id": self.conn.id,
            "tenant_id": principal.tenant_id,
            "user_id": principal.user_id,
            "role": principal.role,
            "expires_at": expires_at,
            "last_seq": last_seq[0]["seq"],
        }

    async def handle(self, raw: str) -> None:
        frame = _json_object(raw)
        if frame is None:
            self.conn.send(_error(None, BadRequest("Send a JSON object", code="invalid_json")))
            return
        command_id = frame.get("id") if isinstance(frame.get("id"), str | int) else None
        kind = frame.get("type")
        entry = _COMMANDS.get(kind) if isinstance(kind, str) else None
        if entry is None:
            message = f"Unknown command type {frame.get('type')!r}"
            self.conn.send(_error(command_id, BadRequest(message, code="unknown_command")))
            return
        model, run = entry
        try:
            command = model.model_validate(frame)
            result = await run(self, command)
        except ValidationError as exc:
            failure = ValidationFailed(
                "Command validation failed", details=pydantic_details(exc.errors())
            )
            self.conn.send(_error(command_id, failure))
            return
        except ApiError as exc:
            self.conn.send(_error(command_id, exc))
            return
        except Exception:
            log.exception("WebSocket command %s failed", frame.get("type"))
            failure = ApiError("Internal error", code="internal_error")
            self.conn.send(_error(command_id, failure))
            return
        if isinstance(command, Ping):
            self.conn.send({"type": "pong", "id": command_id})
        else:
            self.conn.send({"type": "ack", "id": command_id, "ok": True, **(result or {})})

    # --- handlers -----------------------------------------------------------------------

    async def ping(self, command: Ping) -> Result:
        return None

    async def reauth(self, command: Auth) -> Result:
        try:
            auth = await _token_auth(self.services, command.token.strip())
        except InvalidToken as exc:
            raise Unauthorized(str(exc), code="invalid_token") from None
        current = self.conn.principal
        if (auth.principal.tenant_id, auth.principal.user_id) != (
            current.tenant_id,
            current.user_id,
        ):
            raise Forbidden("The token is for another user or company", code="token_mismatch")
        self.conn.principal = auth.principal
        self.conn.viewer = await viewer_for(auth.principal)
        self.conn.expire_at(auth.expires_at)
        return {"expires_at": auth.expires_at}

    async def join(self, command: Join) -> Result:
        await self._visible_conversation(command.conversation_id)
        self.hub.join(self.conn, command.conversation_id)
        return {"conversation_id": command.conversation_id}

    async def leave(self, command: Leave) -> Result:
        self.hub.leave(self.conn, command.conversation_id)
        return {"conversation_id": command.conversation_id}

    async def send_message(self, command: SendMessage) -> Result:
        self._require("messages.send")
        body = command.message or TextSend.model_validate({"type": "text", "text": command.text})
        created = await create_outbound(
            self.services,
            self.conn.principal,
            command.conversation_id,
            body,
            idempotency_key=command.idempotency_key,
        )
        return {"message": created.message.model_dump(mode="json"), "replayed": created.replayed}

    async def typing(self, command: Typing) -> Result:
        self._require("messages.send")
        row = await self._visible_conversation(command.conversation_id)
        delivered = self.hub.relay(
            self.conn,
            command.conversation_id,
            {
                "type": "typing",
                "conversation_id": command.conversation_id,
                "user_id": self.conn.user_id,
            },
            department_id=row["department"],
            assignee_id=row["assignee"],
            status=row["status"],
        )
        return {"delivered": delivered}

    async def presence(self, command: Presence) -> Result:
        principal = self.conn.principal
        if principal.user_id is None:
            raise Forbidden("Presence belongs to users, not API keys", code="not_a_user")
        change = await set_presence(
            self.services, principal.tenant_id, principal.user_id, command.status
        )
        if change is None:
            raise Forbidden("Not an active member of this company", code="not_a_member")
        return {"status": command.status, "changed": change.changed, "assigned": change.assigned}

    # --- helpers ------------------------------------------------------------------------

    def _require(self, permission: str) -> None:
        principal = self.conn.principal
        if not principal.can(permission):
            raise Forbidden(
                f"Missing permission {permission!r}",
                code="permission_denied",
                details={"permission": permission, "role": principal.role},
            )

    async def _visible_conversation(self, conversation_id: uuid.UUID) -> dict[str, Any]:
        """The conversation's visibility facts; 404 for other companies' and hidden ones."""
        row = (
            await Conversation.select(
                Conversation.department, Conversation.assignee, Conversation.status
            )
            .where(
                (Conversation.tenant == self.conn.tenant_id) & (Conversation.id == conversation_id)
            )
            .first()
        )
        if row is None or not _sees(self.conn.viewer, row):
            raise NotFound("Conversation not found", code="conversation_not_found")
        return row


Handler = Callable[[Session, Any], Awaitable[Result]]

#: Command type -> (its model, the Session method that runs it).
_COMMANDS: dict[str, tuple[type[_Command], Handler]] = {
    "ping": (Ping, Session.ping),
    "auth": (Auth, Session.reauth),
    "conversation.join": (Join, Session.join),
    "conversation.leave": (Leave, Session.leave),
    "typing": (Typing, Session.typing),
    "message.send": (SendMessage, Session.send_message),
    "presence": (Presence, Session.presence),
}


def _sees(viewer: Viewer, row: dict[str, Any]) -> bool:
    return viewer.can_see(
        department_id=row["department"], assignee_id=row["assignee"], status=row["status"]
    )


# --- wiring -----------------------------------------------------------------------------


def setup_realtime(app: web.Application) -> Hub:
    """Mount `/ws` and this process's hub; call after the resources context is appended,
    so the hub subscribes to the bus once it is open and lets go before it closes."""
    services = app[SERVICES]
    settings = services.settings
    hub = Hub(
        max_per_tenant=settings.ws_max_connections_per_tenant,
        queue_size=settings.ws_send_queue_size,
    )
    app[HUB] = hub
    app.router.add_get(WS_PATH, websocket)
    _register_metrics(app, hub)

    async def realtime(app: web.Application) -> AsyncIterator[None]:
        hub.attach(services.bus)
        tracker = app[PRESENCE] = _presence_tracker(services)
        tracker.start()
        stop_watching = services.bus.on_notice(_SessionWatch(services, hub).on_notice)
        yield
        stop_watching()
        hub.detach()
        await tracker.stop()

    async def close_sockets(app: web.Application) -> None:
        app[PRESENCE].stopping()  # closing for a restart is not the agents leaving
        await hub.close_all()

    app.cleanup_ctx.append(realtime)
    app.on_shutdown.append(close_sockets)
    return hub


def _presence_tracker(services: Services) -> PresenceTracker:
    """Leases in Redis when configured (many web processes), else in this process."""
    settings = services.settings
    store: MemoryLeases | RedisLeases = MemoryLeases()
    if services.redis is not None:
        prefix = bus_channel(settings.database_url).replace("guiche:events", "guiche:presence")
        store = RedisLeases(services.redis, prefix)
    return PresenceTracker(
        services,
        store,
        grace=settings.presence_grace_seconds,
        lease=settings.presence_lease_seconds,
    )


class _SessionWatch:
    """Closes sockets whose session ended: a user's access changed (deactivated seat,
    password change, "log out everywhere", new role) in this process or another, or the
    bus reconnected (a notice may have been lost)."""

    def __init__(self, services: Services, hub: Hub) -> None:
        self._services = services
        self._hub = hub
        self._tasks: set[asyncio.Task[None]] = set()

    def on_notice(self, notice: Notice) -> None:
        if notice.get("cache") == USER_ACCESS:
            try:
                users = {uuid.UUID(notice.get("id", ""))}
            except ValueError:
                return
        elif notice.get("bus") == "reconnected":
            users = {conn.user_id for conn in self._hub.connections() if conn.user_id}
        else:
            return
        task = asyncio.create_task(self._check(users), name="guiche-ws-session-check")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, users: set[uuid.UUID]) -> None:
        for user_id in users:
            try:
                access = await user_access(self._services, user_id)
            except Exception:
                log.warning("session check failed", exc_info=True, extra={"user": str(user_id)})
                continue
            for conn in self._hub.connections_of(user_id):
                if not _still_valid(conn.principal, access):
                    conn.close(CLOSE_UNAUTHORIZED, "session ended")


def _still_valid(principal: Principal, access: UserAccess) -> bool:
    """The socket's session stands: same version, same seat, same role and platform flag."""
    return (
        access.token_version == principal.token_version
        and access.seats.get(principal.tenant_id) == principal.role
        and access.platform_admin == principal.is_platform_admin
    )


def _register_metrics(app: web.Application, hub: Hub) -> None:
    metrics = app.get(METRICS)
    if metrics is None:
        return
    sockets = Gauge(
        "guiche_ws_connections", "Open WebSockets in this process.", registry=metrics.registry
    )
    sockets.set_function(lambda: hub.total)
    dropped = Counter(
        "guiche_ws_dropped_slow",
        "WebSockets dropped because they fell behind their send queue.",
        registry=metrics.registry,
    )
    hub.on_slow_drop = dropped.inc
