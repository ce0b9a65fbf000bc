"""The 24-hour customer-care window (channels that declare it) and template sends."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from .conftest import Chat, fetch, send_text, settle

WINDOW = pytest.mark.parametrize("fake_plugin", [{"window_24h": True}], indirect=True)
LONG_AGO = dt.timedelta(hours=25)

ORDER_SHIPPED = {
    "type": "template",
    "template": {
        "name": "pedido_enviado",
        "language": "pt_BR",
        "components": [{"type": "body", "parameters": [{"type": "text", "value": "#4521"}]}],
    },
}


async def _outbound_count(chat: Chat) -> int:
    rows = await fetch(
        "SELECT count(*) AS n FROM messages WHERE conversation = {} AND direction = 'out'",
        chat.conversation_id,
    )
    return rows[0]["n"]


async def _create_template(client: Any, chat: Chat, **fields: Any) -> str:
    body = {"name": "boas_vindas", "body": "Olá {{1}}, tudo bem?", **fields}
    resp = await client.post("/api/v1/templates", json=body, headers=chat.headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


@WINDOW
async def test_free_text_outside_the_window_is_422_and_a_template_is_sent(
    client, start_chat, fake_plugin
):
    chat = await start_chat(inbound_at=dt.datetime.now(dt.UTC) - LONG_AGO)

    refused = await send_text(client, chat)

    assert refused.status == 422
    error = (await refused.json())["error"]
    assert error["code"] == "outside_customer_care_window"
    assert "template" in error["message"]
    assert error["details"]["allowed_types"] == ["template"]
    assert await _outbound_count(chat) == 0

    resp = await client.post(chat.url, json=ORDER_SHIPPED, headers=chat.headers)
    assert resp.status == 202, await resp.text()
    created = await resp.json()
    assert (created["type"], created["body"]) == ("template", "[template pedido_enviado]")
    await settle(client)

    [sent] = fake_plugin.provider.sent
    assert sent.kind == "template" and sent.template is not None
    assert (sent.template.name, sent.template.language) == ("pedido_enviado", "pt_BR")
    assert sent.template.components[0].parameters[0].value == "#4521"


@WINDOW
async def test_free_text_inside_the_window_is_sent(client, start_chat, fake_plugin):
    chat = await start_chat(inbound_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=23))

    resp = await send_text(client, chat)

    assert resp.status == 202, await resp.text()
    await settle(client)
    assert len(fake_plugin.provider.sent) == 1


async def test_channels_without_the_window_accept_text_after_24h(client, start_chat):
    chat = await start_chat(inbound_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    assert (await send_text(client, chat)).status == 202


@WINDOW
async def test_stored_template_by_id_with_this_sends_parameters(client, start_chat, fake_plugin):
    chat = await start_chat(inbound_at=dt.datetime.now(dt.UTC) - LONG_AGO)
    template_id = await _create_template(client, chat, channel_id=str(chat.channel.id))
    components = [{"type": "body", "parameters": [{"type": "text", "value": "Ana"}]}]

    resp = await client.post(
        chat.url,
        json={"type": "template", "template_id": template_id, "components": components},
        headers=chat.headers,
    )

    assert resp.status == 202, await resp.text()
    assert (await resp.json())["body"] == "Olá {{1}}, tudo bem?"
    await settle(client)
    [sent] = fake_plugin.provider.sent
    assert sent.template is not None and sent.template.name == "boas_vindas"
    assert sent.template.components[0].parameters[0].value == "Ana"


async def test_unusable_stored_templates_are_422(client, start_chat, make_channel):
    chat = await start_chat()
    other_channel = await make_channel(chat.company.tenant_id)
    elsewhere = await _create_template(client, chat, channel_id=str(other_channel.id))
    pending = await _create_template(client, chat, name="aguardando", status="PENDING")

    for template_id, code in ((elsewhere, "validation_error"), (pending, "template_not_usable")):
        resp = await client.post(
            chat.url, json={"type": "template", "template_id": template_id}, headers=chat.headers
        )
        assert resp.status == 422, await resp.text()
        assert (await resp.json())["error"]["code"] == code
    assert await _outbound_count(chat) == 0
