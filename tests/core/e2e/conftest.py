"""End-to-end helpers: a WebSocket reader that waits on frames (never sleeps), signed
fake-provider webhooks for any base URL, and a company ready to chat: one department,
one online agent, and a fake channel routed to that department."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType

from guiche.channels import DeliveryStatus, InboundMessage, StatusUpdate
from guiche.testing import FAKE_SIGNATURE_HEADER, fake_webhook_body, sign_fake
from tests.conftest import Company, Member
from tests.core.conversations.conftest import (  # noqa: F401  (fixtures used by name)
    FakeChannel,
    fake_plugin,
    make_channel,
    text_message,
)
from tests.core.realtime.conftest import make_department, set_online


@dataclass
class Feed:
    """A connected socket. Frames read while waiting for another one stay in `pending`
    (events of one flow may interleave), so each hop asks only for what it expects."""

    ws: ClientWebSocketResponse
    frame_timeout: float
    pending: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def open(cls, ws: ClientWebSocketResponse, frame_timeout: float) -> Feed:
        feed = cls(ws, frame_timeout)
        ready = await feed.next("ready")
        assert "last_seq" in ready
        return feed

    async def next(self, type_: str, **match: Any) -> dict[str, Any]:
        """The first unconsumed frame of this type whose data has these values."""
        for frame in self.pending:
            if _matches(frame, type_, match):
                self.pending.remove(frame)
                return frame
        while True:
            msg = await self.ws.receive(timeout=self.frame_timeout)
            assert msg.type is WSMsgType.TEXT, f"expected a {type_} frame, got {msg.type}"
            frame = orjson.loads(msg.data)
            if _matches(frame, type_, match):
                return frame
            self.pending.append(frame)


def _matches(frame: dict[str, Any], type_: str, match: dict[str, Any]) -> bool:
    data = frame.get("data") or frame
    return frame["type"] == type_ and all(str(data.get(k)) == str(v) for k, v in match.items())


async def post_signed(
    http: Any,
    url: str,
    messages: Sequence[InboundMessage] = (),
    statuses: Sequence[StatusUpdate] = (),
) -> dict[str, Any]:
    """POST a correctly signed fake-provider webhook; the acknowledgement's JSON."""
    body = fake_webhook_body(messages, statuses)
    headers = {FAKE_SIGNATURE_HEADER: sign_fake(body), "Content-Type": "application/json"}
    async with http.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def read_receipt(provider_message_id: str) -> StatusUpdate:
    return StatusUpdate(
        provider_message_id=provider_message_id,
        status=DeliveryStatus.READ,
        timestamp=dt.datetime.now(dt.UTC),
        raw={"status": "read"},
    )


def customer_message(text: str) -> InboundMessage:
    return text_message(text, at=dt.datetime.now(dt.UTC))


@dataclass
class Desk:
    """A company whose fake channel routes to a department with one online agent."""

    company: Company
    agent: Member
    department_id: uuid.UUID
    channel: FakeChannel


@pytest.fixture
def make_desk(
    make_company: Callable[..., Awaitable[Company]],
    make_channel: Callable[..., Awaitable[FakeChannel]],  # noqa: F811
) -> Callable[[], Awaitable[Desk]]:
    async def make() -> Desk:
        company = await make_company()
        agent = await company.add("agent")
        department_id = await make_department(company.tenant_id, agent)
        await set_online(agent)
        channel = await make_channel(company.tenant_id, department_id=department_id)
        return Desk(company, agent, department_id, channel)

    return make
