"""Evolution posts JSON: a body with the right secret but sent as text/plain is 415."""

from __future__ import annotations

import orjson
from guiche_evolution.adapter import SECRET_HEADER

from .test_flow import client, messages_of, setup, with_key  # noqa: F401  (fixtures)


async def test_text_plain_is_refused_on_both_webhook_urls(
    client,  # noqa: F811
    setup,  # noqa: F811
):
    body = orjson.dumps(with_key("webhook_messages_upsert_conversation.json", id="MT0001"))
    path_url = f"/webhooks/evolution/channel/{setup.channel_id}/{setup.secret}"
    for url in (setup.url, path_url):
        resp = await client.post(
            url, data=body, headers={"Content-Type": "text/plain", SECRET_HEADER: setup.secret}
        )
        assert resp.status == 415, url
        assert (await resp.json())["error"]["code"] == "unsupported_media_type"
    assert await messages_of(setup.channel_id) == []
    resp = await client.post(
        setup.url,
        data=body,
        headers={"Content-Type": "application/json; charset=utf-8", SECRET_HEADER: setup.secret},
    )
    assert resp.status == 200
    assert len(await messages_of(setup.channel_id)) == 1
