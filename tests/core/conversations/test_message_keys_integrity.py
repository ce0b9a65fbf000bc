"""`message_keys` has one foreign key, (tenant, channel) -> channels (tenant, id): a key
cannot name another company's channel, and keys go with their channel or company."""

from __future__ import annotations

import asyncpg
import pytest

from .conftest import fetch, text_message


async def _keys(channel_id: object) -> list[str]:
    rows = await fetch(
        "SELECT provider_message_id FROM message_keys WHERE channel = {}", channel_id
    )
    return [row["provider_message_id"] for row in rows]


async def test_a_key_cannot_name_another_companys_channel(
    client, make_company, make_channel, post_webhook
):
    ours, theirs = await make_company(), await make_company()
    channel = await make_channel(theirs.tenant_id)
    assert (await post_webhook(channel, [text_message(provider_id="k-1")])).status == 200

    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await fetch(
            "INSERT INTO message_keys (channel, provider_message_id, tenant, message_id,"
            " message_created_at) VALUES ({}, 'k-2', {}, gen_random_uuid(), now())",
            channel.id,
            ours.tenant_id,
        )
    assert await _keys(channel.id) == ["k-1"]


async def test_keys_go_with_their_channel_and_with_their_company(
    client, make_company, make_channel, post_webhook
):
    company = await make_company()
    gone, kept = await make_channel(company.tenant_id), await make_channel(company.tenant_id)
    for channel, key in ((gone, "gone-1"), (kept, "kept-1")):
        assert (await post_webhook(channel, [text_message(provider_id=key)])).status == 200

    await fetch("DELETE FROM channels WHERE id = {}", gone.id)
    assert await _keys(gone.id) == []
    assert await _keys(kept.id) == ["kept-1"]

    await fetch("DELETE FROM tenants WHERE id = {}", company.tenant_id)
    assert await _keys(kept.id) == []
