"""Evolution webhooks with text Postgres refuses (NUL) are stored cleaned, raw included."""

from __future__ import annotations

from tests.core.conversations.conftest import fetch

from .test_flow import client, post, setup, with_key  # noqa: F401  (client, setup: fixtures)


async def test_nul_in_text_push_name_and_unknown_fields_is_stored_clean(client, setup):  # noqa: F811
    body = with_key("webhook_messages_upsert_conversation.json", id="NUL0000AAAA1111")
    body["data"]["pushName"] = "Ana\u0000 Beatriz"
    body["data"]["message"]["conversation"] = "Bom\u0000 dia"
    body["data"]["futureField"] = {"x\u0000": "a\u0000b"}
    resp = await post(client, setup, body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["messages"] == 1
    rows = await fetch(
        "SELECT m.body, m.payload, c.name FROM messages m JOIN contacts c ON c.id = m.contact "
        "WHERE m.channel = {}",
        setup.channel_id,
    )
    assert [(r["body"], r["name"]) for r in rows] == [("Bom dia", "Ana Beatriz")]
    assert rows[0]["payload"]["raw"]["futureField"] == {"x": "ab"}
