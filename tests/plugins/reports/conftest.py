"""Fixtures for the reports plugin: the outbound fixtures (fake channel, started chats,
settling in-process tasks), the plugin enabled for a company, and conversations with a
hand-written history inserted as rows (for rollup-versus-raw checks at volume)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from tests.core.outbound.conftest import (  # noqa: F401 - fixtures, used by name
    client,
    client_overrides,
    fake_plugin,
    make_channel,
    post_webhook,
    send_text,
    services_of_client,
    settle,
    start_chat,
)
from tests.core.routing.helpers import add_department, new_phone, sql

API = "/api/v1/plugins/reports"


async def enable_reports(app: Any, headers: dict[str, str], **settings: Any) -> None:
    resp = await app.put(
        "/api/v1/plugins/reports", json={"enabled": True, "settings": settings}, headers=headers
    )
    assert resp.status == 200, await resp.text()


async def add_tabulation(tenant_id: uuid.UUID, name: str = "Resolvido") -> uuid.UUID:
    rows = await sql(
        "INSERT INTO tabulations (tenant, name) VALUES ({}, {}) RETURNING id", tenant_id, name
    )
    return rows[0]["id"]


Step = tuple[float, str, Any]
"""(minutes after the start, kind, detail): a transition ('opened', 'assigned', 'closed',
...; detail = (status, agent)) or a message ('in' / 'out'; detail = the sender or None)."""


async def history(
    tenant_id: uuid.UUID,
    channel_id: uuid.UUID,
    start: dt.datetime,
    steps: Sequence[Step],
    *,
    department_id: uuid.UUID | None = None,
    tabulation_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """A closed conversation with exactly this history, written as core would have."""
    contact = await sql(
        "INSERT INTO contacts (tenant, phone, name) VALUES ({}, {}, 'Cliente') RETURNING id",
        tenant_id,
        "+" + new_phone(),
    )
    closes = [s for s in steps if s[1] in ("closed", "expired")]
    assignee = closes[-1][2][1] if closes else None
    closed_at = start + dt.timedelta(minutes=closes[-1][0]) if closes else None
    rows = await sql(
        "INSERT INTO conversations (tenant, contact, channel, department, assignee, status,"
        " tabulation, opened_at, created_at, closed_at)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}) RETURNING id",
        tenant_id,
        contact[0]["id"],
        channel_id,
        department_id,
        assignee,
        "CLOSED" if closes else "ACTIVE",
        tabulation_id if closes else None,
        start,
        start,
        closed_at,
    )
    cid = rows[0]["id"]
    for minutes, kind, detail in steps:
        at = start + dt.timedelta(minutes=minutes)
        if kind in ("in", "out"):
            await sql(
                "INSERT INTO messages (id, created_at, tenant, conversation, contact, channel,"
                " direction, body, status, sender)"
                " VALUES (gen_random_uuid(), {}, {}, {}, {}, {}, {}, 'x', 'sent', {})",
                at,
                tenant_id,
                cid,
                contact[0]["id"],
                channel_id,
                kind,
                detail,
            )
        else:
            status, agent = detail
            data = {"action": kind, "status": status, "conversation_id": str(cid)}
            if kind == "closed" and tabulation_id:
                data["tabulation_id"] = str(tabulation_id)
            await sql(
                "INSERT INTO events (tenant, type, conversation, department, assignee, data,"
                " created_at) VALUES ({}, 'conversation.updated', {}, {}, {}, {}::jsonb, {})",
                tenant_id,
                cid,
                department_id,
                agent,
                orjson.dumps(data).decode(),
                at,
            )
    return cid


@pytest.fixture
async def department(company: Any) -> uuid.UUID:
    return await add_department(company.tenant_id)
