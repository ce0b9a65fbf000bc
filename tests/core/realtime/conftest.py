"""Real-time fixtures: the conversations engine's fixtures (fake channel plugin installed),
plus a small WebSocket client that waits on frames instead of sleeping."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import ClientWebSocketResponse, WSMsgType

from guiche.channels import InboundMessage
from guiche.models import Department, DepartmentMember, Membership
from guiche.testing import FAKE_SIGNATURE_HEADER, fake_webhook_body, sign_fake
from tests.conftest import Member, login
from tests.core.conversations.conftest import (  # noqa: F401  (fixtures used by name)
    FakeChannel,
    client,
    fake_plugin,
    make_channel,
    post_webhook,
)

#: A safety net for frames that must arrive; absent frames are proven with a ping barrier.
FRAME_TIMEOUT = 10.0


@dataclass
class Socket:
    """A connected client socket. Frames read while looking for another one wait in
    `pending` for a later `next`; `seen` keeps every frame in arrival order."""

    ws: ClientWebSocketResponse
    ready: dict[str, Any] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)

    async def read(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=FRAME_TIMEOUT)
        assert msg.type is WSMsgType.TEXT, f"expected a frame, got {msg.type} {msg.data!r}"
        frame = orjson.loads(msg.data)
        self.seen.append(frame)
        return frame

    async def next(self, type_: str, **match: Any) -> dict[str, Any]:
        """The first unconsumed frame of this type (and data fields), waiting for it."""
        for frame in self.pending:
            if _matches(frame, type_, match):
                self.pending.remove(frame)
                return frame
        while True:
            frame = await self.read()
            if _matches(frame, type_, match):
                return frame
            self.pending.append(frame)

    async def command(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a command and return its answer (ack, error or pong)."""
        command_id = uuid.uuid4().hex
        await self.ws.send_str(orjson.dumps({"type": type_, "id": command_id, **fields}).decode())
        while True:
            frame = await self.read()
            if frame.get("id") == command_id and frame["type"] in ("ack", "error", "pong"):
                return frame
            self.pending.append(frame)

    async def drain(self) -> list[dict[str, Any]]:
        """Every unconsumed frame queued for this socket so far (a ping is answered after
        them), which proves a frame was *not* sent without waiting for a timeout."""
        await self.command("ping")
        frames, self.pending = self.pending, []
        return frames

    async def close_code(self) -> int | None:
        """Read until the server closes; the close code it sent."""
        while True:
            msg = await self.ws.receive(timeout=FRAME_TIMEOUT)
            if msg.type is WSMsgType.CLOSE:
                return msg.data
            if msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
                return self.ws.close_code


def _matches(frame: dict[str, Any], type_: str, match: dict[str, Any]) -> bool:
    data = frame.get("data") or frame
    return frame["type"] == type_ and all(str(data.get(k)) == str(v) for k, v in match.items())


async def open_socket(http: Any, token: str, path: str = "/ws") -> Socket:
    ws = await http.ws_connect(f"{path}?token={token}")
    socket = Socket(ws)
    socket.ready = await socket.next("ready")
    return socket


async def token_of(http: Any, member: Member) -> str:
    headers = await login(http, member)
    return headers["Authorization"].removeprefix("Bearer ")


async def connect(http: Any, member: Member) -> Socket:
    return await open_socket(http, await token_of(http, member))


async def make_department(tenant_id: uuid.UUID, *members: Member) -> uuid.UUID:
    department = Department(tenant=tenant_id, name=f"Dept {uuid.uuid4().hex[:6]}")
    await department.save()
    for member in members:
        await DepartmentMember(
            tenant=tenant_id, department=department.id, user=member.user_id
        ).save()
    return department.id


async def set_online(member: Member) -> None:
    await Membership.update({Membership.status: "online"}).where(
        (Membership.tenant == member.tenant_id) & (Membership.user == member.user_id)
    )


async def post_to(http: Any, channel: FakeChannel, *messages: InboundMessage) -> Any:
    """A signed fake webhook to any app (the `post_webhook` fixture is bound to `client`)."""
    body = fake_webhook_body(messages, [])
    resp = await http.post(
        channel.url,
        data=body,
        headers={FAKE_SIGNATURE_HEADER: sign_fake(body), "Content-Type": "application/json"},
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()
