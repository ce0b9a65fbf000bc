"""The full-history catalog through the real app and a fake ChatGuru server."""

from __future__ import annotations

from typing import Any

from .conftest import catalog, messages_of


async def test_catalog_stores_each_message_once(client: Any, account: Any) -> None:
    fake = account.fake
    job = await catalog(client, account)
    assert job["state"] == "done", job
    assert job["chats_total"] == 3 and job["chats_done"] == 3
    stored = await messages_of(account.channel_id)
    assert len(stored) == fake.message_count() == 6 + 5 + 9
    assert len({m["provider_message_id"] for m in stored}) == len(stored)
    assert job["inserted"] == len(stored)
    assert job["notes"] == 1
    # Ana's history: her fixture pages, in order, with directions and media kept
    ana = [m for m in stored if m["provider_message_id"] in {
        "64d4d4b4716cd193800da372", "89b03fd9aeaf01cdaf22a1ff", "2b1b8d7b845bf248433d7ba6",
        "3c0bc406c949fe426c395555", "4d77873ba12a4babf7963d0c", "581e18cdc0212c293e6f274d"}]
    assert [m["direction"] for m in ana] == ["in", "out", "in", "in", "out", "in"]
    assert [m["type"] for m in ana] == ["text", "text", "image", "text", "text", "audio"]


async def test_catalog_again_adds_nothing(client: Any, account: Any) -> None:
    first = await catalog(client, account)
    second = await catalog(client, account)
    assert second["state"] == "done" and second["inserted"] == 0
    assert len(await messages_of(account.channel_id)) == first["inserted"]
