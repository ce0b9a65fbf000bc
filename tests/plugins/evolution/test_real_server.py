"""The evolution plugin against the real Evolution API 2.3.6 (`../shared/tools/evolution-server`
builds and starts it on 127.0.0.1:19180); skipped when that server does not answer.

WhatsApp is unreachable there, so Baileys instances never link (they stay `connecting`
and post `connection.update` in a loop); `EVOLUTION`-integration instances need no
WhatsApp and carry real `messages.upsert`, `send.message` and `sendText`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from guiche_evolution.adapter import SECRET_HEADER

from guiche.runtime.services import SERVICES
from tests.conftest import login

from .conftest import real
from .test_flow import channel_row, enable, fetch, messages_of, settle, state_events

SERVER = "http://127.0.0.1:19180"
GLOBAL_KEY = "EVO-REAL-GLOBAL-KEY-7f3c2a91d4"

pytestmark = pytest.mark.evolution_real


def _server_answers() -> bool:
    try:
        answer = httpx.get(SERVER + "/", timeout=5.0, trust_env=False)
        return answer.status_code == 200 and "Evolution" in answer.text
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def real_server() -> str:
    if not _server_answers():
        pytest.skip(f"the real Evolution API does not answer on {SERVER}")
    return SERVER


@pytest.fixture
async def evo(real_server: str) -> AsyncIterator[Any]:
    """Direct calls to the real server with the global key; deletes what it was told to."""
    created: list[str] = []
    async with httpx.AsyncClient(
        base_url=real_server, headers={"apikey": GLOBAL_KEY}, trust_env=False
    ) as http:
        http.created = created  # type: ignore[attr-defined]
        yield http
        for name in created:
            await http.delete(f"/instance/logout/{name}")
            await http.delete(f"/instance/delete/{name}")


@pytest.fixture
async def guiche(make_client: Any, tmp_path: Any, allow_private: None, monkeypatch: Any) -> Any:
    """The real app, reachable by the real server: GUICHE_PUBLIC_URL is its address."""
    client = await make_client(
        storage_path=str(tmp_path / "media"),
        send_retry_base_seconds=0.0,
        send_retry_max_seconds=0.0,
    )
    # Its address is known once it listens: tell the settings adapters are built from.
    client.server.app[SERVICES].settings.public_url = str(client.server.make_url("")).rstrip("/")
    return client


def name() -> str:
    return "guiche-real-" + uuid.uuid4().hex[:10]


async def new_channel(
    client: Any, company: Any, instance: str, *, api_key: str = GLOBAL_KEY, **extra: Any
) -> tuple[dict[str, str], dict[str, Any]]:
    headers = await login(client, company.owner)
    await enable(client, headers)
    resp = await client.post(
        "/api/v1/channels",
        json={
            "type": "evolution",
            "name": "Real",
            "credentials": {
                "server_url": SERVER,
                "api_key": api_key,
                "instance_name": instance,
                **extra,
            },
        },
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    return headers, await resp.json()


async def eventually(check: Any, within: float = 15.0) -> Any:
    """Poll `check` until truthy: the real server works in another process."""
    for _ in range(int(within / 0.2)):
        if result := await check():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"not true within {within} s: {check}")


async def test_provisioning_registers_the_webhook_and_deactivation_removes_it(
    guiche, evo, make_company
):
    instance = name()
    evo.created.append(instance)
    headers, channel = await new_channel(guiche, await make_company(), instance)
    assert channel["state"] == "provisioned", channel["state_detail"]
    found = (await evo.get(f"/webhook/find/{instance}")).json()
    assert found["url"] == f"{guiche.server.make_url('')}".rstrip("/") + (
        f"/webhooks/evolution/{channel['id']}"
    )
    assert found["enabled"] is True and found["webhookBase64"] is True
    assert found["webhookByEvents"] is False
    assert set(found["events"]) == {
        "MESSAGES_UPSERT",
        "MESSAGES_UPDATE",
        "CONNECTION_UPDATE",
        "QRCODE_UPDATED",
        "SEND_MESSAGE",
    }
    assert len(found["headers"]["x-guiche-webhook-secret"]) >= 40
    resp = await guiche.delete(f"/api/v1/channels/{channel['id']}", headers=headers)
    assert resp.status == 204

    async def gone() -> bool:  # Evolution removes the instance in the background
        found = await evo.get("/instance/fetchInstances", params={"instanceName": instance})
        return found.status_code == 404

    await eventually(gone)


async def test_a_wrong_key_says_the_key_was_refused(guiche, evo, make_company):
    _, channel = await new_channel(guiche, await make_company(), name(), api_key="WRONG-KEY-1234")
    assert channel["state"] == "provisioning_failed"
    assert "The API key was refused" in channel["state_detail"]
    assert "does not exist" not in channel["state_detail"]


async def test_a_pre_existing_instance_delivers_inbound_and_takes_replies(
    guiche, evo, make_company
):
    """An EVOLUTION-integration instance made outside Guichê, with its own token: real
    messages.upsert reaches the conversation, the agent's reply goes out by sendText."""
    instance, number = name(), "55119" + str(uuid.uuid4().int)[:8]
    evo.created.append(instance)
    created = await evo.post(
        "/instance/create",
        json={"instanceName": instance, "integration": "EVOLUTION", "number": number},
    )
    assert created.status_code == 201, created.text
    own_token = created.json()["hash"]
    company = await make_company()
    headers, channel = await new_channel(guiche, company, instance)
    assert channel["state"] == "provisioned", channel["state_detail"]
    channel_id = uuid.UUID(channel["id"])

    key_id = "REAL" + uuid.uuid4().hex[:12].upper()
    injected = await evo.post(
        "/webhook/evolution",
        json={
            "numberId": number,
            "key": {"id": key_id, "remoteJid": "5511987654321@s.whatsapp.net", "fromMe": False},
            "pushName": "Maria",
            "message": {"conversation": "Olá, quero ajuda"},
            "messageType": "conversation",
        },
    )
    assert injected.status_code == 200, injected.text
    [inbound] = await eventually(lambda: messages_of(channel_id))
    assert (inbound["direction"], inbound["body"]) == ("in", "Olá, quero ajuda")
    assert inbound["provider_message_id"] == key_id
    loaded = await _loaded(guiche, channel_id)
    assert loaded.adapter.settings.instance_token.get_secret_value() == own_token

    resp = await guiche.post(
        f"/api/v1/conversations/{inbound['conversation']}/messages",
        json={"type": "text", "text": "Oi Maria, como posso ajudar?"},
        headers=headers,
    )
    assert resp.status == 202, await resp.text()
    reply_id = (await resp.json())["id"]
    await settle(guiche)
    [reply] = await fetch("SELECT * FROM messages WHERE id = {}", uuid.UUID(reply_id))
    assert reply["status"] == "sent", reply["error"]
    assert reply["provider_message_id"]
    # Evolution's send.message echo arrives and is folded into the reply: one copy
    await asyncio.sleep(1.0)
    rows = await messages_of(channel_id)
    # (sorted: Evolution rounds messageTimestamp to the nearest second, which may be
    # later than the reply's own creation)
    assert sorted((row["direction"], row["body"]) for row in rows) == [
        ("in", "Olá, quero ajuda"),
        ("out", "Oi Maria, como posso ajudar?"),
    ]


async def _loaded(client: Any, channel_id: uuid.UUID) -> Any:
    from guiche.plugin import load_channel

    return await load_channel(client.server.app[SERVICES], channel_id)


async def test_an_unlinked_phone_fails_sends_at_once_and_floods_make_one_event(
    guiche, evo, make_company
):
    """A Baileys instance that cannot reach WhatsApp: the QR route starts it, Evolution
    then posts `connecting` over and over; a reply fails at once (channel_not_connected)."""
    instance = name()
    evo.created.append(instance)
    company = await make_company()
    headers, channel = await new_channel(guiche, company, instance)
    channel_id = uuid.UUID(channel["id"])
    qr = await guiche.get(
        f"/api/v1/plugins/evolution/channels/{channel_id}/qrcode", headers=headers
    )
    assert qr.status == 200, await qr.text()

    async def connecting_posts() -> bool:
        return (await channel_row(channel_id))["state"] == "connecting"

    await eventually(connecting_posts)
    await asyncio.sleep(3.0)  # several more identical connection.update webhooks
    states = [
        e for e in await state_events(company.tenant_id) if e["channel_id"] == str(channel_id)
    ]
    changes = [(e["state"], e["detail"]) for e in states]
    # the QR route's own "connecting" (with its detail) and the webhooks' one: each once,
    # however many identical webhooks arrived
    assert len(changes) == len(set(changes)) <= 3, changes

    # a customer's message opens the conversation (Evolution's real body, with the
    # secret it was told to send)
    secret = (await evo.get(f"/webhook/find/{instance}")).json()["headers"][SECRET_HEADER]
    resp = await guiche.post(
        f"/webhooks/evolution/{channel_id}",
        data=orjson.dumps(real("webhook_messages_upsert_evolution.json", instance)),
        headers={"Content-Type": "application/json", SECRET_HEADER: secret},
    )
    assert resp.status == 200, await resp.text()
    [inbound] = await messages_of(channel_id)
    conversation = inbound["conversation"]
    resp = await guiche.post(
        f"/api/v1/conversations/{conversation}/messages",
        json={"type": "text", "text": "Olá"},
        headers=headers,
    )
    assert resp.status == 202
    await settle(guiche)
    [sent] = await fetch(
        "SELECT * FROM messages WHERE id = {}", uuid.UUID((await resp.json())["id"])
    )
    error = orjson.loads(sent["error"]) if isinstance(sent["error"], str) else sent["error"]
    assert (sent["status"], error["code"]) == ("failed", "channel_not_connected")
