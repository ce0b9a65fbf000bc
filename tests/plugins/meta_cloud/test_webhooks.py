"""Meta webhooks through the real app: the per-channel URL core owns, and the app-level
`/webhooks/meta_cloud/app` that routes by phone_number_id across tenants."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.core.conversations.conftest import fetch
from tests.plugins.meta_cloud.conftest import (
    APP_SECRET,
    FIXTURE_PHONE_ID,
    VERIFY_TOKEN,
    MakeChannel,
    deactivate,
    fixture_bytes,
    post_channel_webhook,
    sign,
    unique_phone_id,
)

MESSAGE_FIXTURES = {
    "webhook_text.json": "text",
    "webhook_reply.json": "text",
    "webhook_image.json": "image",
    "webhook_audio.json": "audio",
    "webhook_video.json": "video",
    "webhook_document.json": "document",
    "webhook_sticker.json": "sticker",
    "webhook_location.json": "location",
    "webhook_contacts.json": "contacts",
    "webhook_interactive_button_reply.json": "interactive",
    "webhook_interactive_list_reply.json": "interactive",
    "webhook_button.json": "interactive",
    "webhook_reaction.json": "reaction",
    "webhook_order.json": "unsupported",
    "webhook_system.json": "unsupported",
    "webhook_unsupported.json": "unsupported",
    "webhook_username_user.json": "text",
}

APP_URL = "/webhooks/meta_cloud/app"


async def stored(channel_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT id, type, body, direction, status, payload, provider_message_id, contact, tenant "
        "FROM messages WHERE channel = {} ORDER BY created_at, provider_message_id",
        channel_id,
    )


async def test_subscription_check_on_the_channel_url(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    channel_id = await make_meta_channel(await make_company())
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "8493"}
    resp = await client.get(f"/webhooks/meta_cloud/{channel_id}", params=query)
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert await resp.text() == "8493"
    resp = await client.get(
        f"/webhooks/meta_cloud/{channel_id}", params={**query, "hub.verify_token": "nope"}
    )
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "subscription_refused"


async def test_every_message_fixture_lands_once(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    company = await make_company()
    channel_id = await make_meta_channel(company)
    for name in MESSAGE_FIXTURES:
        body = fixture_bytes(name)  # the exact fixture bytes, signed as Meta would
        resp = await post_channel_webhook(client, channel_id, body)
        assert resp.status == 200, (name, await resp.text())
        assert (await resp.json())["messages"] == 1, name
    rows = await stored(channel_id)
    assert sorted(row["type"] for row in rows) == sorted(MESSAGE_FIXTURES.values())
    assert all(row["direction"] == "in" and row["status"] == "received" for row in rows)
    assert all(row["tenant"] == company.tenant_id for row in rows)
    assert all(row["payload"]["raw"] for row in rows)
    order = next(row for row in rows if row["payload"]["raw"].get("type") == "order")
    assert order["body"].startswith("[order: 2 items")

    username = await fetch(
        "SELECT c.phone, c.name, c.custom_fields, i.provider_user_id FROM contacts c "
        "JOIN contact_identities i ON i.contact = c.id "
        "WHERE c.tenant = {} AND i.channel_type = 'meta_cloud'",
        company.tenant_id,
    )
    assert len(username) == 1
    assert username[0]["phone"] is None
    assert username[0]["provider_user_id"] == "BR.7319046628150274"
    assert username[0]["name"] == "Bia"

    for name in MESSAGE_FIXTURES:  # Meta redelivers: nothing new, still 200
        resp = await post_channel_webhook(client, channel_id, fixture_bytes(name))
        assert resp.status == 200
        assert (await resp.json())["duplicates"] == 1
    assert len(await stored(channel_id)) == len(MESSAGE_FIXTURES)


async def test_signature_failures_store_nothing(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    channel_id = await make_meta_channel(await make_company())
    body = fixture_bytes("webhook_text.json")
    for signature in ("", sign(body, "wrong-secret"), sign(body + b" "), "sha1=abc"):
        resp = await post_channel_webhook(client, channel_id, body, signature=signature)
        assert resp.status == 401, signature
        assert (await resp.json())["error"]["code"] == "invalid_signature"
    assert await stored(channel_id) == []


async def test_statuses_for_unknown_messages_are_acknowledged(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    channel_id = await make_meta_channel(await make_company())
    for name in (
        "webhook_status_sent.json",
        "webhook_status_delivered.json",
        "webhook_status_read.json",
        "webhook_status_failed.json",
        "webhook_status_with_conversation_legacy.json",
    ):
        resp = await post_channel_webhook(client, channel_id, fixture_bytes(name))
        assert resp.status == 200
        assert (await resp.json())["ignored"] == 1  # not a message we sent: nothing to move


# --- the app-level webhook --------------------------------------------------------------


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUICHE_META_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("GUICHE_META_VERIFY_TOKEN", "operator-token")


def batch_for(first: str, second: str) -> bytes:
    """webhook_batch_many.json for two of our numbers instead of the fixture's."""
    body = fixture_bytes("webhook_batch_many.json").decode()
    body = body.replace(FIXTURE_PHONE_ID, first).replace("301234567890456", second)
    return body.encode()


async def post_app(client: Any, body: bytes, signature: str | None = None) -> Any:
    return await client.post(
        APP_URL,
        data=body,
        headers={
            "X-Hub-Signature-256": signature or sign(body),
            "Content-Type": "application/json",
        },
    )


async def test_app_webhook_routes_each_change_to_its_tenant(
    client: Any, make_company: Any, make_meta_channel: MakeChannel, app_env: None
) -> None:
    first_company, second_company = await make_company(), await make_company()
    first_id, second_id = unique_phone_id(), unique_phone_id()
    first = await make_meta_channel(first_company, phone_number_id=first_id, app_secret=None)
    second = await make_meta_channel(second_company, phone_number_id=second_id, app_secret=None)
    body = batch_for(first_id, second_id)
    resp = await post_app(client, body)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["messages"] == 4
    assert answer["unknown_phone_number_ids"] == []
    first_rows, second_rows = await stored(first), await stored(second)
    assert len(first_rows) == 3 and {r["tenant"] for r in first_rows} == {first_company.tenant_id}
    assert [r["type"] for r in second_rows] == ["location"]
    assert second_rows[0]["tenant"] == second_company.tenant_id

    again = await post_app(client, body)  # a replayed POST creates nothing new
    assert (await again.json())["messages"] == 0
    assert (await again.json())["duplicates"] == 4
    assert len(await stored(first)) == 3 and len(await stored(second)) == 1


async def test_unknown_phone_number_id_is_logged_and_acknowledged(
    client: Any, app_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    body = fixture_bytes("webhook_unknown_phone_number_id.json")
    resp = await post_app(client, body)
    assert resp.status == 200  # never a retry storm from Meta
    answer = await resp.json()
    assert answer["unknown_phone_number_ids"] == ["399999999999999"]
    assert answer["messages"] == 0 and answer["ignored"] == 1
    assert any("no routable channel holds" in r.getMessage() for r in caplog.records)
    rows = await fetch(
        "SELECT count(*) AS n FROM messages WHERE provider_message_id = {}",
        "wamid.HBgNNTU2MTk4MTIzNDU2NxUCABIYFEFENkUzMjYyMDZGQTdDNTBGMjdGAA==",
    )
    assert rows[0]["n"] == 0


async def test_a_new_channel_is_found_at_once_and_a_removed_one_dropped(
    client: Any,
    make_company: Any,
    make_meta_channel: MakeChannel,
    app_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    company = await make_company()
    phone_id = unique_phone_id()
    text = fixture_bytes("webhook_text.json").replace(FIXTURE_PHONE_ID.encode(), phone_id.encode())
    resp = await post_app(client, text)  # loads (and caches) the directory: not ours yet
    assert (await resp.json())["unknown_phone_number_ids"] == [phone_id]
    channel_id = await make_meta_channel(company, phone_number_id=phone_id)
    resp = await post_app(client, text)
    assert (await resp.json())["messages"] == 1
    assert len(await stored(channel_id)) == 1

    monkeypatch.setenv("GUICHE_META_DIRECTORY_TTL_SECONDS", "0")
    await deactivate(channel_id)
    other = text.replace(
        b"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDUwNTJGNjFENUIwOUZFQTA1Q0MxAA==",
        b"wamid.AFTER-DEACTIVATION",
    )
    resp = await post_app(client, other)
    assert resp.status == 200
    assert (await resp.json())["unknown_phone_number_ids"] == [phone_id]
    assert len(await stored(channel_id)) == 1


async def test_app_webhook_signature_and_subscription(client: Any, app_env: None) -> None:
    body = fixture_bytes("webhook_unknown_phone_number_id.json")
    for signature in (sign(body, "not-the-app-secret"), "sha256=", "garbage"):
        resp = await post_app(client, body, signature=signature)
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "invalid_signature"
    resp = await client.post(APP_URL, data=body)  # no header at all
    assert resp.status == 401
    query = {"hub.mode": "subscribe", "hub.verify_token": "operator-token", "hub.challenge": "42"}
    resp = await client.get(APP_URL, params=query)
    assert resp.status == 200 and await resp.text() == "42"
    resp = await client.get(APP_URL, params={**query, "hub.verify_token": VERIFY_TOKEN})
    assert resp.status == 403


async def test_app_webhook_is_off_without_an_operator_secret(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GUICHE_META_APP_SECRET", raising=False)
    monkeypatch.delenv("GUICHE_META_VERIFY_TOKEN", raising=False)
    body = fixture_bytes("webhook_text.json")
    resp = await post_app(client, body)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "meta_app_webhook_disabled"
    resp = await client.get(
        APP_URL, params={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    )
    assert resp.status == 403
