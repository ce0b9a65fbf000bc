"""Addressing: a message may name the chat it was written in (`InboundMessage.chat`).

A group's messages from several people make one conversation whose contact is the
group; each message keeps its author; a reply goes to the group by its id; the same
person's direct chat stays a conversation of its own. The bulk import places group
history on the same contact as webhooks do.
"""

from __future__ import annotations

import uuid
from typing import Any

from guiche import plugin
from guiche.channel_host.runtime import channel_row as load_channel
from guiche.channels import Chat, ChatKind, InboundMessage
from guiche.runtime.services import SERVICES
from guiche.testing import FakeChannelPlugin
from tests.conftest import login

from .conftest import fetch, settle, text_message

GROUP = Chat(id="120363025246125486@g.us", kind=ChatKind.GROUP, title="Equipe Loja Centro")


def in_group(message: InboundMessage, chat: Chat = GROUP) -> InboundMessage:
    return message.model_copy(update={"chat": chat})


async def test_a_group_is_one_conversation_with_each_author_kept(
    client: Any,
    make_company: Any,
    make_channel: Any,
    post_webhook: Any,
    fake_plugin: FakeChannelPlugin,
) -> None:
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    ana = in_group(text_message("Bom dia!", phone="5511987654321", name="Ana"))
    bruno = in_group(text_message("Chegou o pedido?", phone="5521998765432", name="Bruno"))
    direct = text_message("Oi, só eu aqui", phone="5511987654321", name="Ana")
    resp = await post_webhook(channel, [ana, bruno, direct])
    assert resp.status == 200, await resp.text()

    conversations = await fetch(
        "SELECT c.id, ct.name, ct.phone, ct.chat_kind, count(m.id) AS messages"
        " FROM conversations c JOIN contacts ct ON ct.id = c.contact"
        " JOIN messages m ON m.conversation = c.id"
        " WHERE c.channel = {} GROUP BY c.id, ct.id ORDER BY ct.chat_kind DESC",
        channel.id,
    )
    assert [(c["name"], c["phone"], c["chat_kind"], c["messages"]) for c in conversations] == [
        ("Equipe Loja Centro", None, "group", 2),
        ("Ana", "+5511987654321", "direct", 1),
    ]
    group_conversation = conversations[0]["id"]

    headers = await login(client, company.owner)
    resp = await client.get(f"/api/v1/conversations/{group_conversation}/messages", headers=headers)
    assert resp.status == 200, await resp.text()
    authors = {m["content"]["sender"]["name"] for m in (await resp.json())["items"]}
    assert authors == {"Ana", "Bruno"}
    contact_id = await _contact_of(group_conversation)
    contact = await client.get(f"/api/v1/contacts/{contact_id}", headers=headers)
    assert (await contact.json())["chat_kind"] == "group"

    # a reply goes to the group, by its id, never to one of its members
    resp = await client.post(
        f"/api/v1/conversations/{group_conversation}/messages",
        json={"type": "text", "text": "Chegou sim!"},
        headers=headers,
    )
    assert resp.status == 202, await resp.text()
    await settle(client)
    [sent] = await fake_plugin.provider.wait_sent(1)
    assert sent.to.provider_user_id == GROUP.id
    assert sent.to.phone is None and sent.to.chat_kind is ChatKind.GROUP


async def test_history_import_places_group_messages_on_the_group(
    client: Any, make_company: Any, make_channel: Any, post_webhook: Any
) -> None:
    company = await make_company()
    channel = await make_channel(company.tenant_id)
    resp = await post_webhook(channel, [in_group(text_message("ao vivo", name="Ana"))])
    assert resp.status == 200, await resp.text()
    row = await load_channel(channel.id)
    assert row is not None
    other = Chat(id="120363999999999999@g.us", kind=ChatKind.GROUP, title="Outro grupo")
    history = [
        in_group(text_message("antigo 1", phone="5531988887777", name="Caio")),
        in_group(text_message("antigo 2", phone="5511987654321", name="Ana")),
        in_group(text_message("de outro grupo", name="Ana"), other),
    ]
    await plugin.import_history(client.server.app[SERVICES], row, history)
    contacts = await fetch(
        "SELECT ct.name, ct.chat_kind, count(m.id) AS messages FROM contacts ct"
        " JOIN messages m ON m.contact = ct.id WHERE ct.tenant = {}"
        " GROUP BY ct.id ORDER BY ct.name",
        company.tenant_id,
    )
    assert [(c["name"], c["chat_kind"], c["messages"]) for c in contacts] == [
        ("Equipe Loja Centro", "group", 3),
        ("Outro grupo", "group", 1),
    ]


async def _contact_of(conversation_id: uuid.UUID) -> uuid.UUID:
    [row] = await fetch("SELECT contact FROM conversations WHERE id = {}", conversation_id)
    return row["contact"]
