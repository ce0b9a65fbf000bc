"""`guiche.plugin.messages_by_phone`: one phone's messages across every channel of the
company, newest first, by keyset cursor; phones as people type them; tenant-scoped."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from guiche.plugin import ApiError, BadRequest, ValidationFailed, messages_by_phone

from .conftest import BASE_TIME, text_message


async def test_pages_newest_first_across_channels(
    client: Any, company: Any, make_channel: Any, post_webhook: Any
) -> None:
    first, second = await make_channel(company.tenant_id), await make_channel(company.tenant_id)
    for i in range(5):
        channel = first if i % 2 else second
        at = BASE_TIME + dt.timedelta(minutes=i)
        resp = await post_webhook(channel, [text_message(f"m{i}", at=at)])
        assert resp.status == 200, await resp.text()
    resp = await post_webhook(first, [text_message("someone else", phone="5511900000000")])
    assert resp.status == 200
    bodies: list[str] = []
    cursor = None
    while True:
        page = await messages_by_phone(
            company.tenant_id, "+55 (11) 98765-4321", limit=2, cursor=cursor
        )
        assert page["phone"] == "+5511987654321" and len(page["items"]) <= 2
        bodies += [item["body"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert bodies == ["m4", "m3", "m2", "m1", "m0"]
    only = await messages_by_phone(company.tenant_id, "5511987654321", channel_type="fake")
    assert len(only["items"]) == 5
    assert (await messages_by_phone(company.tenant_id, "5511987654321", channel_type="x"))[
        "items"
    ] == []


async def test_other_companies_and_unknown_phones_see_nothing(
    client: Any, make_company: Any, make_channel: Any, post_webhook: Any
) -> None:
    mine, other = await make_company(), await make_company()
    channel = await make_channel(mine.tenant_id)
    assert (await post_webhook(channel, [text_message("oi")])).status == 200
    page = await messages_by_phone(other.tenant_id, "5511987654321")
    assert page == {
        "phone": "+5511987654321",
        "contact_id": None,
        "items": [],
        "next_cursor": None,
    }


async def test_bad_input_is_an_api_error(client: Any, company: Any) -> None:
    with pytest.raises(ValidationFailed):
        await messages_by_phone(company.tenant_id, "not a phone")
    with pytest.raises(ValidationFailed):
        await messages_by_phone(company.tenant_id, "5511987654321", limit=201)
    with pytest.raises(BadRequest) as bad:
        await messages_by_phone(company.tenant_id, "5511987654321", cursor="%%%")
    assert isinstance(bad.value, ApiError) and bad.value.code == "invalid_cursor"
