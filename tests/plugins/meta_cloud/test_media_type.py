"""Webhook routes that expect JSON refuse other media types (415, error shape), even
for a correctly signed body; JSON with a charset parameter is JSON."""

from __future__ import annotations

import uuid
from typing import Any

from tests.core.conversations.conftest import fetch
from tests.plugins.meta_cloud.conftest import (
    FIXTURE_PHONE_ID,
    MakeChannel,
    fixture_bytes,
    sign,
    unique_phone_id,
)
from tests.plugins.meta_cloud.test_provider_identity import text_for
from tests.plugins.meta_cloud.test_webhooks import APP_URL, app_env  # noqa: F401


async def count(wamid: str) -> int:
    rows = await fetch("SELECT count(*) AS n FROM messages WHERE provider_message_id = {}", wamid)
    return rows[0]["n"]


async def post(client: Any, url: str, body: bytes, content_type: str) -> Any:
    headers = {"X-Hub-Signature-256": sign(body), "Content-Type": content_type}
    return await client.post(url, data=body, headers=headers)


async def test_signed_text_plain_is_415_and_json_with_charset_is_stored(
    client: Any,
    make_company: Any,
    make_meta_channel: MakeChannel,
    app_env: None,  # noqa: F811
) -> None:
    phone_id = unique_phone_id()
    channel_id = await make_meta_channel(await make_company(), phone_number_id=phone_id)
    for url in (f"/webhooks/meta_cloud/{channel_id}", APP_URL):
        body, wamid = text_for(phone_id)
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            resp = await post(client, url, body, content_type)
            assert resp.status == 415, (url, content_type)
            error = (await resp.json())["error"]
            assert error["code"] == "unsupported_media_type"
            assert error["details"]["accepted"] == ["application/json"]
        assert await count(wamid) == 0
        resp = await post(client, url, body, "application/json; charset=utf-8")
        assert resp.status == 200, await resp.text()
        assert await count(wamid) == 1


async def test_an_unknown_channel_is_still_404_whatever_the_media_type(client: Any) -> None:
    body = fixture_bytes("webhook_text.json").replace(FIXTURE_PHONE_ID.encode(), b"1")
    resp = await post(client, f"/webhooks/meta_cloud/{uuid.uuid4()}", body, "text/plain")
    assert resp.status == 404
