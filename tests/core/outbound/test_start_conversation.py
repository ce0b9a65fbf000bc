"""POST /api/v1/conversations: outbound-first conversations (a contact who never wrote)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from guiche.channels import PermanentSendError
from tests.conftest import login, published_events

from .conftest import fetch, message_row, services_of_client, settle

WINDOW_FAKE = pytest.mark.parametrize("fake_plugin", [{"window_24h": True}], indirect=True)

URL = "/api/v1/conversations"
HELLO = {"type": "text", "text": "Olá! Aqui é da Loja, sobre o seu orçamento."}
TEMPLATE = {
    "type": "template",
    "template": {
        "name": "retomada",
        "language": "pt_BR",
        "components": [{"type": "body", "parameters": [{"type": "text", "value": "Ana"}]}],
    },
}


async def _contact(client: Any, headers: dict[str, str], phone: str = "+5511912345678") -> str:
    resp = await client.post(
        "/api/v1/contacts", json={"name": "Ana", "phone": phone}, headers=headers
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def _start(client: Any, headers: dict[str, str], **body: Any) -> Any:
    body.setdefault("message", HELLO)
    for key, value in list(body.items()):
        if isinstance(value, uuid.UUID):
            body[key] = str(value)
    return await client.post(URL, json=body, headers=headers)


async def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == code, error
    return error


async def _conversations(channel_id: Any) -> list[dict[str, Any]]:
    return await fetch("SELECT * FROM conversations WHERE channel = {}", channel_id)


async def test_a_contact_who_never_wrote_gets_a_conversation_and_the_message_is_sent_once(
    client, company, make_channel, fake_plugin
):
    channel = await make_channel(company.tenant_id)
    headers = await login(client, company.owner)
    contact_id = await _contact(client, headers)

    with published_events(services_of_client(client).bus) as seen:
        resp = await _start(client, headers, contact_id=contact_id, channel_id=channel.id)
        assert resp.status == 201, await resp.text()
        await settle(client)

    created = await resp.json()
    conversation, message = created["conversation"], created["message"]
    assert conversation["status"] == "ACTIVE"
    assert conversation["assignee"]["id"] == str(company.owner.user_id)
    assert conversation["contact"]["id"] == contact_id
    assert (message["direction"], message["status"]) == ("out", "pending")
    assert message["conversation_id"] == conversation["id"]
    [sent] = fake_plugin.provider.sent
    assert (sent.kind, sent.text, sent.to.phone) == ("text", HELLO["text"], "+5511912345678")
    assert (await message_row(message["id"]))["status"] == "sent"

    kinds = [(e.type, e.data.get("action")) for e in seen]
    assert ("conversation.updated", "opened") in kinds and ("message.new", None) in kinds
    [audit] = await fetch(
        "SELECT * FROM audit_log WHERE tenant = {} AND action = 'conversation.start'",
        company.tenant_id,
    )
    assert audit["actor"] == company.owner.user_id
    assert str(audit["target_id"]) == conversation["id"]
    assert audit["data"]["message_id"] == message["id"]


async def test_a_failed_first_send_is_visible_on_the_message(
    client, company, make_channel, fake_plugin
):
    fake_plugin.provider.fail_next(PermanentSendError("not on WhatsApp", code="invalid_recipient"))
    channel = await make_channel(company.tenant_id)
    headers = await login(client, company.owner)
    contact_id = await _contact(client, headers)

    resp = await _start(client, headers, contact_id=contact_id, channel_id=channel.id)
    assert resp.status == 201, await resp.text()
    await settle(client)

    stored = await message_row((await resp.json())["message"]["id"])
    assert stored["status"] == "failed"
    assert stored["error"]["code"] == "invalid_recipient"


@WINDOW_FAKE
async def test_window_channels_take_only_a_template_for_a_cold_contact(
    client, company, make_channel, fake_plugin
):
    channel = await make_channel(company.tenant_id)
    headers = await login(client, company.owner)
    contact_id = await _contact(client, headers)

    refused = await _start(client, headers, contact_id=contact_id, channel_id=channel.id)
    error = await _error(refused, 422, "outside_customer_care_window")
    assert error["details"]["allowed_types"] == ["template"]
    assert await _conversations(channel.id) == []

    resp = await _start(
        client, headers, contact_id=contact_id, channel_id=channel.id, message=TEMPLATE
    )
    assert resp.status == 201, await resp.text()
    await settle(client)
    [sent] = fake_plugin.provider.sent
    assert sent.kind == "template" and sent.template is not None
    assert sent.template.components[0].parameters[0].value == "Ana"


@WINDOW_FAKE
async def test_the_window_counts_the_contacts_last_message_in_a_closed_conversation(
    client, start_chat
):
    chat = await start_chat(inbound_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    [old] = await _conversations(chat.channel.id)
    await fetch("UPDATE conversations SET status = 'CLOSED' WHERE id = {}", old["id"])

    resp = await _start(client, chat.headers, contact_id=old["contact"], channel_id=chat.channel.id)

    assert resp.status == 201, await resp.text()
    started = (await resp.json())["conversation"]
    assert started["id"] != str(old["id"])
    assert started["last_inbound_at"] is not None


async def test_an_open_conversation_is_refused_and_returned(client, start_chat):
    chat = await start_chat()
    [open_one] = await _conversations(chat.channel.id)

    resp = await _start(
        client, chat.headers, contact_id=open_one["contact"], channel_id=chat.channel.id
    )

    error = await _error(resp, 409, "conversation_already_open")
    assert error["details"]["conversation_id"] == str(chat.conversation_id)
    assert error["details"]["conversation"]["id"] == str(chat.conversation_id)
    assert len(await _conversations(chat.channel.id)) == 1


async def test_references_of_another_company_are_refused(
    client, make_company, make_channel, fake_plugin
):
    mine, theirs = await make_company(), await make_company()
    my_channel = await make_channel(mine.tenant_id)
    their_channel = await make_channel(theirs.tenant_id)
    headers = await login(client, mine.owner)
    their_headers = await login(client, theirs.owner)
    my_contact = await _contact(client, headers)
    their_contact = await _contact(client, their_headers)
    dept = await client.post("/api/v1/departments", json={"name": "Vendas"}, headers=their_headers)
    assert dept.status == 201, await dept.text()
    their_department = (await dept.json())["id"]
    their_agent = await theirs.add("agent")

    cases = [
        ("contact_id", {"contact_id": their_contact, "channel_id": my_channel.id}),
        ("channel_id", {"contact_id": my_contact, "channel_id": their_channel.id}),
        (
            "department_id",
            {
                "contact_id": my_contact,
                "channel_id": my_channel.id,
                "department_id": their_department,
            },
        ),
        (
            "assignee_id",
            {
                "contact_id": my_contact,
                "channel_id": my_channel.id,
                "assignee_id": their_agent.user_id,
            },
        ),
    ]
    for field, body in cases:
        error = await _error(await _start(client, headers, **body), 422, "validation_error")
        assert error["details"][0]["field"] == field
    assert await _conversations(my_channel.id) == []
    assert await _conversations(their_channel.id) == []
    assert fake_plugin.provider.sent == []


async def test_permissions_viewer_refused_agent_holds_it_and_only_leads_pick_someone_else(
    client, company, make_channel
):
    channel = await make_channel(company.tenant_id)
    owner_headers = await login(client, company.owner)
    viewer, agent, other = (
        await company.add("viewer"),
        await company.add("agent"),
        await company.add("agent"),
    )

    resp = await _start(
        client,
        await login(client, viewer),
        contact_id=await _contact(client, owner_headers, "+5511911110001"),
        channel_id=channel.id,
    )
    await _error(resp, 403, "permission_denied")

    agent_headers = await login(client, agent)
    resp = await _start(
        client,
        agent_headers,
        contact_id=await _contact(client, owner_headers, "+5511911110002"),
        channel_id=channel.id,
        assignee_id=other.user_id,
    )
    await _error(resp, 403, "permission_denied")

    resp = await _start(
        client,
        agent_headers,
        contact_id=await _contact(client, owner_headers, "+5511911110003"),
        channel_id=channel.id,
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["conversation"]["assignee"]["id"] == str(agent.user_id)

    resp = await _start(
        client,
        owner_headers,
        contact_id=await _contact(client, owner_headers, "+5511911110004"),
        channel_id=channel.id,
        assignee_id=other.user_id,
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["conversation"]["assignee"]["id"] == str(other.user_id)


async def test_an_api_key_leaves_it_queued_in_the_department(client, company, make_channel):
    owner_headers = await login(client, company.owner)
    dept = await client.post("/api/v1/departments", json={"name": "Vendas"}, headers=owner_headers)
    department_id = (await dept.json())["id"]
    channel = await make_channel(company.tenant_id)
    key = await client.post(
        "/api/v1/api-keys", json={"name": "CRM", "role": "agent"}, headers=owner_headers
    )
    assert key.status == 201, await key.text()
    key_headers = {"x-api-key": (await key.json())["key"]}

    resp = await _start(
        client,
        key_headers,
        contact_id=await _contact(client, owner_headers),
        channel_id=channel.id,
        department_id=department_id,
    )

    assert resp.status == 201, await resp.text()
    conversation = (await resp.json())["conversation"]
    assert conversation["status"] == "PENDING" and conversation["assignee"] is None
    assert conversation["department"]["id"] == department_id


@pytest.mark.parametrize(
    "body",
    [
        {"channel_id": str(uuid.uuid4()), "message": HELLO},
        {"contact_id": str(uuid.uuid4()), "channel_id": str(uuid.uuid4())},
        {"contact_id": "x", "channel_id": str(uuid.uuid4()), "message": HELLO},
        {
            "contact_id": str(uuid.uuid4()),
            "channel_id": str(uuid.uuid4()),
            "message": {"type": "text"},
        },
    ],
)
async def test_malformed_bodies_are_422(client, company, body):
    resp = await client.post(URL, json=body, headers=await login(client, company.owner))
    await _error(resp, 422, "validation_error")
