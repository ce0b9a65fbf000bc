"""A signed Meta batch with text Postgres refuses (NUL) is stored, cleaned, whole; a
message that cannot be stored for another reason fails alone, never its batch-mates."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest

from tests.core.conversations.conftest import fetch
from tests.plugins.meta_cloud.conftest import (
    FIXTURE_WABA_ID,
    MakeChannel,
    now_ts,
    post_channel_webhook,
    unique_phone_id,
)

ANA, CARLOS = "5511987654321", "5521998765432"


def text(wamid: str, sender: str, body: str, **extra: Any) -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid,
        "timestamp": now_ts(),
        "type": "text",
        "text": {"body": body},
        **extra,
    }


def batch(phone_number_id: str, messages: list[dict[str, Any]], **value: Any) -> bytes:
    """A `messages` change as Meta sends it (JSON escapes NUL as \\u0000)."""
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": FIXTURE_WABA_ID,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "551130304040",
                                    "phone_number_id": phone_number_id,
                                },
                                "contacts": [
                                    {"profile": {"name": "Ana\u0000 Souza"}, "wa_id": ANA},
                                    {"profile": {"name": "Carlos Lima"}, "wa_id": CARLOS},
                                ],
                                "messages": messages,
                                **value,
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def wamid() -> str:
    return f"wamid.NUL{uuid.uuid4().hex}"


async def stored(channel_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT m.provider_message_id, m.body, m.payload, c.name AS contact_name "
        "FROM messages m JOIN contacts c ON c.id = m.contact "
        "WHERE m.channel = {} ORDER BY m.provider_message_id",
        channel_id,
    )


async def test_nul_in_body_profile_name_and_unknown_fields_is_stored_clean(
    client: Any, make_company: Any, make_meta_channel: MakeChannel
) -> None:
    phone_id = unique_phone_id()
    channel_id = await make_meta_channel(await make_company(), phone_number_id=phone_id)
    ids = sorted(wamid() for _ in range(3))
    body = batch(
        phone_id,
        [
            text(ids[0], ANA, "Bom\u0000 dia"),  # NUL in the body; Ana's profile name too
            text(ids[1], CARLOS, "Olá", future_field={"note\u0000": "a\u0000b"}),
            text(ids[2], CARLOS, "Tudo bem?"),
        ],
        unknown_value_field="x\u0000y",
    )
    assert b"\\u0000" in body
    resp = await post_channel_webhook(client, channel_id, body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["messages"] == 3
    rows = await stored(channel_id)
    assert [r["provider_message_id"] for r in rows] == ids
    assert rows[0]["body"] == "Bom dia"
    assert rows[0]["contact_name"] == "Ana Souza"
    raw = rows[1]["payload"]["raw"]
    assert raw["future_field"] == {"note": "ab"}  # the raw payload is kept, cleaned
    assert rows[2]["body"] == "Tudo bem?"


async def test_a_message_that_cannot_be_stored_fails_alone(
    client: Any,
    make_company: Any,
    make_meta_channel: MakeChannel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    phone_id = unique_phone_id()
    channel_id = await make_meta_channel(await make_company(), phone_number_id=phone_id)
    good = sorted(wamid() for _ in range(2))
    too_long = "wamid." + "X" * 300  # message_keys.provider_message_id is varchar(200)
    body = batch(
        phone_id,
        [text(good[0], ANA, "primeira"), text(too_long, CARLOS, "ruim"), text(good[1], ANA, "ok")],
    )
    with caplog.at_level(logging.ERROR, logger="guiche.inbound"):
        resp = await post_channel_webhook(client, channel_id, body)
    # A retry could never store it (Meta would retry for days, then disable the webhook):
    # the batch is acknowledged, the failure is counted in the answer and logged.
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["messages"] == 2
    assert answer["failed"] == 1
    assert [r["provider_message_id"] for r in await stored(channel_id)] == good
    failures = [r for r in caplog.records if r.getMessage().startswith("inbound message not")]
    assert len(failures) == 1
    assert failures[0].provider_message_id == too_long[:200]
    assert "ruim" in failures[0].payload

    again = await post_channel_webhook(client, channel_id, body)  # a redelivery
    answer = await again.json()
    assert (answer["messages"], answer["duplicates"], answer["failed"]) == (0, 2, 1)
    assert len(await stored(channel_id)) == 2
