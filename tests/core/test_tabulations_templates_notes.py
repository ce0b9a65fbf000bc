"""Tabulations, templates and notes over HTTP."""

from __future__ import annotations

import uuid

from guiche.models import AuditLog, Channel, Contact, Conversation, Note, Tabulation
from tests.conftest import login


async def _post(client, url: str, headers, body: dict, status: int = 201) -> dict:
    resp = await client.post(url, json=body, headers=headers)
    assert resp.status == status, await resp.text()
    return await resp.json()


def _fields(error_body: dict) -> set[str]:
    return {d["field"] for d in error_body["error"]["details"]}


# --- tabulations ------------------------------------------------------------------------------


async def test_tabulation_crud_unique_and_soft_delete(client, company):
    headers = await login(client, company.owner)
    solved = await _post(client, "/api/v1/tabulations", headers, {"name": "Resolvido"})
    await _post(client, "/api/v1/tabulations", headers, {"name": "Sem resposta"})
    dup = await _post(client, "/api/v1/tabulations", headers, {"name": "RESOLVIDO"}, 409)
    assert dup["error"]["details"]["existing_id"] == solved["id"]
    bad = await _post(client, "/api/v1/tabulations", headers, {"name": "", "description": 1}, 422)
    assert _fields(bad) == {"name", "description"}
    url = f"/api/v1/tabulations/{solved['id']}"
    resp = await client.patch(url, json={"description": "Cliente atendido"}, headers=headers)
    assert (await resp.json())["description"] == "Cliente atendido"
    resp = await client.patch(url, json={"name": "sem RESPOSTA"}, headers=headers)
    assert resp.status == 409
    assert (await client.delete(url, headers=headers)).status == 204
    assert await Tabulation.select(Tabulation.is_active).where(Tabulation.id == solved["id"]) == [
        {"is_active": False}
    ]
    listed = await (await client.get("/api/v1/tabulations", headers=headers)).json()
    assert [t["name"] for t in listed["items"]] == ["Sem resposta"]
    listed = await (
        await client.get("/api/v1/tabulations?limit=1&include_inactive=1", headers=headers)
    ).json()
    assert len(listed["items"]) == 1 and listed["next_cursor"]
    agent = await login(client, await company.add("agent"))
    assert (await client.get(url, headers=agent)).status == 200
    assert (await client.patch(url, json={"name": "x"}, headers=agent)).status == 403
    actions = await AuditLog.select(AuditLog.action).where(AuditLog.target_id == solved["id"])
    assert {a["action"] for a in actions} == {
        "tabulation.create",
        "tabulation.update",
        "tabulation.delete",
    }


# --- templates -------------------------------------------------------------------------------


async def _channel(tenant_id: uuid.UUID) -> uuid.UUID:
    rows = await Channel.insert(Channel(tenant=tenant_id, type="test", name="Chan")).returning(
        Channel.id
    )
    return rows[0]["id"]


async def test_template_crud_and_uniqueness(client, company):
    headers = await login(client, company.owner)
    channel_id = await _channel(company.tenant_id)
    components = [{"type": "BODY", "text": "Olá {{1}}"}]
    body = {
        "name": "boas_vindas",
        "language": "pt_BR",
        "category": "marketing",
        "body": "Olá {{1}}",
        "components": components,
        "channel_id": str(channel_id),
    }
    template = await _post(client, "/api/v1/templates", headers, body)
    assert template["category"] == "MARKETING"
    assert template["components"] == components
    assert template["channel_id"] == str(channel_id)
    assert template["status"] == "APPROVED"
    await _post(client, "/api/v1/templates", headers, body, 409)
    other_language = await _post(
        client, "/api/v1/templates", headers, {**body, "language": "en_US"}
    )
    canned = await _post(client, "/api/v1/templates", headers, {"name": "boas_vindas"})
    assert canned["channel_id"] is None and canned["language"] == "pt_BR"
    await _post(client, "/api/v1/templates", headers, {"name": "boas_vindas"}, 409)

    bad = await _post(
        client,
        "/api/v1/templates",
        headers,
        {"name": "", "language": "portuguese!", "components": {"a": 1}, "category": "a b"},
        422,
    )
    assert _fields(bad) == {"name", "language", "components", "category"}
    bad = await _post(
        client, "/api/v1/templates", headers, {"name": "x", "channel_id": str(uuid.uuid4())}, 422
    )
    assert _fields(bad) == {"channel_id"}

    url = f"/api/v1/templates/{template['id']}"
    resp = await client.patch(url, json={"status": "rejected"}, headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "REJECTED"
    # without its channel it would collide with the canned reply of the same name and language
    resp = await client.patch(url, json={"channel_id": None}, headers=headers)
    assert resp.status == 409
    resp = await client.patch(
        f"/api/v1/templates/{other_language['id']}", json={"channel_id": None}, headers=headers
    )
    assert resp.status == 200
    assert (await resp.json())["channel_id"] is None

    listed = await (
        await client.get(f"/api/v1/templates?channel_id={channel_id}", headers=headers)
    ).json()
    assert [t["id"] for t in listed["items"]] == [template["id"]]
    listed = await (await client.get("/api/v1/templates?status=rejected", headers=headers)).json()
    assert [t["id"] for t in listed["items"]] == [template["id"]]
    listed = await (await client.get("/api/v1/templates?limit=2", headers=headers)).json()
    assert [t["id"] for t in listed["items"]] == [canned["id"], other_language["id"]]
    assert (await client.delete(url, headers=headers)).status == 204
    assert (await client.get(url, headers=headers)).status == 404
    viewer = await login(client, await company.add("viewer"))
    assert (await client.get("/api/v1/templates", headers=viewer)).status == 200
    assert (
        await client.post("/api/v1/templates", json={"name": "v"}, headers=viewer)
    ).status == 403


# --- notes -----------------------------------------------------------------------------------


async def _contact_and_conversation(tenant_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    channel_id = await _channel(tenant_id)
    contact = await Contact.insert(Contact(tenant=tenant_id, name="Cliente")).returning(Contact.id)
    conversation = await Conversation.insert(
        Conversation(tenant=tenant_id, contact=contact[0]["id"], channel=channel_id)
    ).returning(Conversation.id)
    return contact[0]["id"], conversation[0]["id"]


async def test_notes_on_contact_and_conversation(client, company, make_company):
    agent = await company.add("agent")
    headers = await login(client, agent)
    contact_id, conversation_id = await _contact_and_conversation(company.tenant_id)
    note = await _post(
        client, "/api/v1/notes", headers, {"body": " Cliente VIP ", "contact_id": str(contact_id)}
    )
    assert note["body"] == "Cliente VIP"
    assert note["author"] == {"id": str(agent.user_id), "name": "Agent"}
    assert note["contact_id"] == str(contact_id) and note["conversation_id"] is None
    assert note["created_at"]
    on_conversation = await _post(
        client,
        "/api/v1/notes",
        headers,
        {"body": "Pediu retorno", "conversation_id": str(conversation_id)},
    )
    listed = await (
        await client.get(f"/api/v1/notes?contact_id={contact_id}", headers=headers)
    ).json()
    assert listed == {"items": [note], "next_cursor": None}
    listed = await (
        await client.get(f"/api/v1/notes?conversation_id={conversation_id}", headers=headers)
    ).json()
    assert [n["id"] for n in listed["items"]] == [on_conversation["id"]]

    both = await _post(
        client,
        "/api/v1/notes",
        headers,
        {"body": "x", "contact_id": str(contact_id), "conversation_id": str(conversation_id)},
        422,
    )
    assert _fields(both) == {"contact_id", "conversation_id"}
    neither = await _post(client, "/api/v1/notes", headers, {"body": ""}, 422)
    assert _fields(neither) == {"body"}
    neither = await _post(client, "/api/v1/notes", headers, {"body": "x"}, 422)
    assert _fields(neither) == {"contact_id", "conversation_id"}
    resp = await client.get("/api/v1/notes", headers=headers)
    assert resp.status == 422

    other = await make_company()
    foreign_contact, foreign_conversation = await _contact_and_conversation(other.tenant_id)
    await _post(
        client, "/api/v1/notes", headers, {"body": "x", "contact_id": str(foreign_contact)}, 404
    )
    await _post(
        client,
        "/api/v1/notes",
        headers,
        {"body": "x", "conversation_id": str(foreign_conversation)},
        404,
    )
    resp = await client.get(f"/api/v1/notes?contact_id={foreign_contact}", headers=headers)
    assert resp.status == 404
    assert await Note.count().where(Note.tenant == other.tenant_id) == 0


async def test_note_deletion_by_author_or_manager(client, company):
    author = await company.add("agent")
    author_headers = await login(client, author)
    colleague = await login(client, await company.add("agent"))
    admin = await login(client, await company.add("admin"))
    contact_id, _ = await _contact_and_conversation(company.tenant_id)
    body = {"body": "nota", "contact_id": str(contact_id)}
    first = await _post(client, "/api/v1/notes", author_headers, body)
    second = await _post(client, "/api/v1/notes", author_headers, body)
    resp = await client.delete(f"/api/v1/notes/{first['id']}", headers=colleague)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "not_author"
    assert (
        await client.delete(f"/api/v1/notes/{first['id']}", headers=author_headers)
    ).status == 204
    assert (await client.delete(f"/api/v1/notes/{second['id']}", headers=admin)).status == 204
    assert await Note.count().where(Note.contact == contact_id) == 0
    assert (await client.delete(f"/api/v1/notes/{second['id']}", headers=admin)).status == 404
    viewer = await login(client, await company.add("viewer"))
    await _post(client, "/api/v1/notes", viewer, body, 403)
