"""Building a team for routing and conversation tests: departments, agents with a
presence and a cap, conversations opened through the real webhook or inserted as rows."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from guiche.models import Channel

_phones = itertools.count(87_000_000 + uuid.uuid4().int % 1_000_000)


def new_phone() -> str:
    """A valid Brazilian mobile (WhatsApp id form) no other conversation in the run uses."""
    return f"55119{next(_phones):08d}"


async def sql(query: str, *args: Any) -> list[dict[str, Any]]:
    """Raw SQL with `{}` placeholders on the app's engine."""
    return await Channel.raw(query, *args)


async def add_department(tenant_id: uuid.UUID, name: str | None = None) -> uuid.UUID:
    rows = await sql(
        "INSERT INTO departments (tenant, name) VALUES ({}, {}) RETURNING id",
        tenant_id,
        name or f"Dept {uuid.uuid4().hex[:8]}",
    )
    return rows[0]["id"]


async def join(tenant_id: uuid.UUID, department_id: uuid.UUID, user_id: uuid.UUID) -> None:
    await sql(
        'INSERT INTO department_members (tenant, department, "user") VALUES ({}, {}, {})',
        tenant_id,
        department_id,
        user_id,
    )


async def set_presence(tenant_id: uuid.UUID, user_id: uuid.UUID, status: str) -> None:
    """Presence written directly (no drain), to arrange a scene."""
    await sql(
        'UPDATE memberships SET status = {} WHERE tenant = {} AND "user" = {}',
        status,
        tenant_id,
        user_id,
    )


async def add_agent(
    company: Any,
    departments: tuple[uuid.UUID, ...] = (),
    *,
    role: str = "agent",
    max_chats: int = 5,
    status: str = "online",
) -> Any:
    member = await company.add(role, max_chats=max_chats)
    for department_id in departments:
        await join(company.tenant_id, department_id, member.user_id)
    await set_presence(company.tenant_id, member.user_id, status)
    return member


async def insert_conversation(
    tenant_id: uuid.UUID,
    channel_id: uuid.UUID,
    *,
    department_id: uuid.UUID | None = None,
    assignee_id: uuid.UUID | None = None,
    status: str = "PENDING",
) -> uuid.UUID:
    """A conversation row with a fresh contact, without routing (for load and queue scenes)."""
    contact = await sql(
        "INSERT INTO contacts (tenant, phone, name) VALUES ({}, {}, {}) RETURNING id",
        tenant_id,
        "+" + new_phone(),
        "Cliente",
    )
    rows = await sql(
        "INSERT INTO conversations (tenant, contact, channel, department, assignee, status,"
        " queued_at) VALUES ({}, {}, {}, {}, {}, {}, now()) RETURNING id",
        tenant_id,
        contact[0]["id"],
        channel_id,
        department_id,
        assignee_id,
        status,
    )
    return rows[0]["id"]


async def conversation_of(provider_message_id: str) -> uuid.UUID:
    rows = await sql(
        "SELECT conversation FROM messages WHERE provider_message_id = {}", provider_message_id
    )
    return rows[0]["conversation"]


async def conversation_row(conversation_id: uuid.UUID) -> dict[str, Any]:
    rows = await sql("SELECT * FROM conversations WHERE id = {}", conversation_id)
    return rows[0]
