"""The Evolution channel end to end through the real app and a fake Evolution server:
provision → QR → connected → inbound → reply → acks, plus authentication, groups, fromMe,
media, Brazilian ninth digit, @lid chats, tenancy of the QR route and deactivation."""

from __future__ import annotations

import base64
import copy
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from guiche_evolution.adapter import SECRET_HEADER

from guiche.models import Channel
from guiche.runtime.services import SERVICES
from tests.conftest import Company, login

from .conftest import INSTANCE, INSTANCE_TOKEN, load, real
from .fake_evolution import FakeEvolution

PUBLIC_URL = "https://guiche.example.test"


@pytest.fixture
async def client(make_client, tmp_path, allow_private, monkeypatch):
    monkeypatch.setenv("GUICHE_PUBLIC_URL", PUBLIC_URL)
    return await make_client(
        storage_path=str(tmp_path / "media"),
        send_retry_base_seconds=0.0,
        send_retry_max_seconds=0.0,
    )


async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
    rows = await Channel.raw(sql, *args)
    return [
        {k: orjson.loads(v) if k == "payload" and isinstance(v, str) else v for k, v in r.items()}
        for r in rows
    ]


async def settle(client: Any) -> None:
    """Wait until no send task, media task or plugin hook is still running in-process."""
    services = client.server.app[SERVICES]
    broker = services.tasks.broker
    while services.background or broker._running_tasks:
        await services.wait_background()
        await broker.wait_all()


@dataclass
class Setup:
    company: Company
    headers: dict[str, str]
    channel_id: uuid.UUID
    fake: FakeEvolution

    @property
    def secret(self) -> str:
        """What Evolution was told to send back: the header set through /webhook/set."""
        return self.fake.instances[INSTANCE]["webhook"]["headers"][SECRET_HEADER]

    @property
    def url(self) -> str:
        return f"/webhooks/evolution/{self.channel_id}"


async def enable(client: Any, headers: dict[str, str]) -> None:
    resp = await client.put("/api/v1/plugins/evolution", json={"enabled": True}, headers=headers)
    assert resp.status == 200, await resp.text()


async def create_channel(
    client: Any, headers: dict[str, str], server_url: str, **credentials: Any
) -> Any:
    return await client.post(
        "/api/v1/channels",
        json={
            "type": "evolution",
            "name": "Loja Centro",
            "credentials": {
                "server_url": server_url,
                "api_key": "global-key-0123456789",
                "instance_name": INSTANCE,
                # the fixtures' bodies carry this instance token as their `apikey`
                "instance_token": INSTANCE_TOKEN,
                **credentials,
            },
        },
        headers=headers,
    )


@pytest.fixture
async def setup(client, make_company, fake_evolution) -> Setup:
    fake, server_url = fake_evolution
    company = await make_company()
    headers = await login(client, company.owner)
    await enable(client, headers)
    resp = await create_channel(client, headers, server_url)
    assert resp.status == 201, await resp.text()
    channel = await resp.json()
    return Setup(company, headers, uuid.UUID(channel["id"]), fake)


async def post(
    client: Any, setup: Setup, body: dict[str, Any], *, secret: str | None = None
) -> Any:
    return await client.post(
        setup.url,
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json", SECRET_HEADER: secret or setup.secret},
    )


async def channel_row(channel_id: uuid.UUID) -> dict[str, Any]:
    return (await fetch("SELECT * FROM channels WHERE id = {}", channel_id))[0]


async def messages_of(channel_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT * FROM messages WHERE channel = {} ORDER BY created_at, id", channel_id
    )


def with_key(name: str, **key: Any) -> dict[str, Any]:
    body = copy.deepcopy(load(name))
    body["data"]["key"].update(key)
    return body


async def test_provision_qr_connect_inbound_reply_and_acks(client, setup):
    fake = setup.fake
    # provisioning: the instance, then its webhook (v2 nested body) pointing at this channel
    [create] = fake.calls_to("/instance/create")
    assert create.body["token"] == INSTANCE_TOKEN and create.body["qrcode"] is False
    hook = fake.instances[INSTANCE]["webhook"]
    assert hook["url"] == f"{PUBLIC_URL}/webhooks/evolution/{setup.channel_id}"
    assert (hook["enabled"], hook["byEvents"], hook["base64"]) == (True, False, True)
    assert set(hook["events"]) == {
        "MESSAGES_UPSERT",
        "MESSAGES_UPDATE",
        "CONNECTION_UPDATE",
        "QRCODE_UPDATED",
        "SEND_MESSAGE",
    }
    assert len(setup.secret) >= 40
    assert (await channel_row(setup.channel_id))["state"] == "provisioned"
    shown = await (
        await client.get(f"/api/v1/channels/{setup.channel_id}", headers=setup.headers)
    ).json()
    assert setup.secret not in orjson.dumps(shown).decode()  # only ever masked

    # the operator opens the QR code
    qr_url = f"/api/v1/plugins/evolution/channels/{setup.channel_id}/qrcode"
    resp = await client.get(qr_url, headers=setup.headers)
    assert resp.status == 200, await resp.text()
    qr = await resp.json()
    assert qr["state"] == "qr_required"
    assert base64.b64decode(qr["qr_code"]).startswith(b"\x89PNG")
    assert qr["qr_text"].startswith("2@")
    assert (await channel_row(setup.channel_id))["state"] == "qr_required"

    # the phone scans it: Evolution reports the connection
    fake.connect(INSTANCE)
    resp = await post(client, setup, load("webhook_connection_update_open.json"))
    assert resp.status == 200, await resp.text()
    assert (await channel_row(setup.channel_id))["state"] == "connected"
    states = await fetch(
        "SELECT data FROM events WHERE tenant = {} AND type = 'channel.state' ORDER BY seq",
        setup.company.tenant_id,
    )
    assert [orjson.loads(e["data"])["state"] for e in states][-2:] == ["qr_required", "connected"]
    assert (await (await client.get(qr_url, headers=setup.headers)).json())["state"] == "connected"

    # a customer writes
    resp = await post(client, setup, load("webhook_messages_upsert_conversation.json"))
    assert (await resp.json())["messages"] == 1
    [inbound] = await messages_of(setup.channel_id)
    assert (inbound["direction"], inbound["body"]) == (
        "in",
        "Bom dia! Vocês entregam em Pinheiros?",
    )
    [contact] = await fetch("SELECT * FROM contacts WHERE id = {}", inbound["contact"])
    assert (contact["phone"], contact["name"]) == ("+5511987654321", "Ana Beatriz Souza")

    # the agent replies through the API; the worker sends it to Evolution
    resp = await client.post(
        f"/api/v1/conversations/{inbound['conversation']}/messages",
        json={"type": "text", "text": "Entregamos sim!", "reply_to_message_id": str(inbound["id"])},
        headers=setup.headers,
    )
    assert resp.status == 202, await resp.text()
    reply_id = uuid.UUID((await resp.json())["id"])
    await settle(client)
    [send] = fake.calls_to("/message/sendText")
    assert send.headers["apikey"] == "global-key-0123456789"
    assert send.body["number"] == "5511987654321"
    assert send.body["text"] == "Entregamos sim!"
    assert send.body["quoted"] == {"key": {"id": "712626B9A1DADB893B9BE4E91F35E485"}}
    [reply] = await fetch("SELECT * FROM messages WHERE id = {}", reply_id)
    assert reply["status"] == "sent"
    provider_id = reply["provider_message_id"]
    assert provider_id.startswith("3EB0")

    # Evolution echoes our own send: a duplicate of the provider id, nothing new is stored
    echo = with_key("webhook_send_message.json", id=provider_id)
    resp = await post(client, setup, echo)
    assert resp.status == 200
    assert ((await resp.json())["messages"], (await resp.json())["duplicates"]) == (0, 1)
    assert len(await messages_of(setup.channel_id)) == 2

    # acks, keyed by data.keyId, move it forward to read (and never back)
    for name in (
        "webhook_messages_update_server_ack.json",
        "webhook_messages_update_read.json",
        "webhook_messages_update_delivery_ack.json",
    ):
        body = load(name)
        body["data"]["keyId"] = provider_id
        assert (await post(client, setup, body)).status == 200
    [reply] = await fetch("SELECT * FROM messages WHERE id = {}", reply_id)
    assert reply["status"] == "read"


async def test_an_echo_posted_before_the_send_answers_is_merged_into_the_reply(client, setup):
    """Evolution posts `send.message` while our send call is still open: core stores the
    echo, then the worker's commit merges it into the reply (one outbound message)."""
    setup.fake.connect(INSTANCE)
    assert (
        await post(client, setup, load("webhook_messages_upsert_conversation.json"))
    ).status == 200
    [inbound] = await messages_of(setup.channel_id)
    answers: list[dict[str, Any]] = []

    async def echo_first(key_id: str, body: dict[str, Any]) -> None:
        echo = with_key("webhook_send_message.json", id=key_id)
        answers.append(await (await post(client, setup, echo)).json())

    setup.fake.on_send = echo_first
    resp = await client.post(
        f"/api/v1/conversations/{inbound['conversation']}/messages",
        json={"type": "text", "text": "Olá, Ana! Seu pedido saiu para entrega."},
        headers=setup.headers,
    )
    assert resp.status == 202, await resp.text()
    reply_id = uuid.UUID((await resp.json())["id"])
    await settle(client)

    assert answers[0]["messages"] == 1  # the echo was stored for a moment
    rows = await messages_of(setup.channel_id)
    assert [(row["direction"], row["id"]) for row in rows] == [
        ("in", inbound["id"]),
        ("out", reply_id),
    ]
    assert len(setup.fake.calls_to("/message/sendText")) == 1
    assert rows[1]["status"] == "sent" and rows[1]["provider_message_id"].startswith("3EB0")
    merged = await fetch(
        "SELECT data FROM events WHERE conversation = {} AND type = 'message.merged'",
        inbound["conversation"],
    )
    assert [orjson.loads(e["data"])["merged_into"] for e in merged] == [str(reply_id)]


async def test_a_wrong_or_missing_secret_is_401_and_stores_nothing(client, setup):
    body = load("webhook_messages_upsert_conversation.json")
    resp = await post(client, setup, body, secret="not-the-secret-at-all")
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_signature"
    resp = await client.post(setup.url, data=orjson.dumps(body))  # no header at all
    assert resp.status == 401
    assert await messages_of(setup.channel_id) == []
    # a null apikey (Evolution's default) with the right secret is fine
    resp = await post(client, setup, load("webhook_apikey_null.json"))
    assert (await resp.json())["messages"] == 1


async def test_the_path_secret_variant(client, setup):
    body = load("webhook_messages_upsert_conversation.json")
    base = f"/webhooks/evolution/channel/{setup.channel_id}"
    resp = await client.post(f"{base}/wrong-secret", data=orjson.dumps(body))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_signature"
    resp = await client.post(f"/webhooks/evolution/channel/{uuid.uuid4()}/x", data=b"{}")
    assert resp.status == 404
    resp = await client.post(f"{base}/{setup.secret}", data=orjson.dumps(body))
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["messages"] == 1
    resp = await client.post(f"{base}/{setup.secret}", data=b"not json")
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "unparseable_webhook"
    # core's receiver answers both routes: the same fields, the replay a duplicate
    resp = await post(client, setup, body)
    assert set(await resp.json()) == set(answer)
    assert (await resp.json())["duplicates"] == 1


async def test_groups_are_ignored_until_the_channel_accepts_them(client, setup):
    body = load("webhook_messages_upsert_group.json")
    resp = await post(client, setup, body)
    assert (await resp.json())["messages"] == 0
    resp = await client.patch(
        f"/api/v1/channels/{setup.channel_id}",
        json={"credentials": {"reject_groups": False}},
        headers=setup.headers,
    )
    assert resp.status == 200, await resp.text()
    resp = await post(client, setup, body)
    assert (await resp.json())["messages"] == 1
    [message] = await messages_of(setup.channel_id)
    identity = await fetch(
        "SELECT provider_user_id FROM contact_identities WHERE contact = {}", message["contact"]
    )
    assert [i["provider_user_id"] for i in identity] == ["120363041234567890@g.us"]


async def test_messages_typed_on_the_phone_are_outbound_from_the_phone(client, setup):
    customer = load("webhook_apikey_null.json")  # the same customer, writing first
    await post(client, setup, customer)
    resp = await post(client, setup, load("webhook_messages_upsert_from_me.json"))
    assert (await resp.json())["messages"] == 1
    by_direction = {m["direction"]: m for m in await messages_of(setup.channel_id)}
    typed, first = by_direction["out"], by_direction["in"]
    assert typed["status"] == "sent"
    assert typed["conversation"] == first["conversation"]
    [contact] = await fetch("SELECT * FROM contacts WHERE id = {}", typed["contact"])
    assert contact["name"] == "Paulo Henrique Costa"  # never the owner's pushName


async def test_inline_media_is_saved_in_core_storage(client, setup):
    body = load("webhook_messages_upsert_image_base64.json")
    resp = await post(client, setup, body)
    assert (await resp.json())["messages"] == 1
    await settle(client)
    [message] = await messages_of(setup.channel_id)
    assert message["type"] == "image"
    media_id = message["payload"]["media_id"]
    data = base64.b64decode(body["data"]["message"]["base64"])
    [stored] = await fetch("SELECT * FROM media_files WHERE id = {}", uuid.UUID(media_id))
    assert (stored["mime_type"], stored["size"]) == ("image/jpeg", len(data))
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    resp = await client.get(f"/api/v1/media/{media_id}", headers=setup.headers)
    assert resp.status == 200 and await resp.read() == data


async def test_ninth_digit_forms_are_one_contact_and_replies_reach_evolution(client, setup):
    setup.fake.connect(INSTANCE)
    short = load("webhook_messages_upsert_ninth_digit.json")
    full = with_key(
        "webhook_messages_upsert_ninth_digit.json",
        remoteJid="5531988887777@s.whatsapp.net",
        id="FULL" + uuid.uuid4().hex[:12].upper(),
    )
    for body in (short, full):
        assert (await post(client, setup, body)).status == 200
    first, second = await messages_of(setup.channel_id)
    assert first["contact"] == second["contact"]
    assert first["conversation"] == second["conversation"]
    [contact] = await fetch("SELECT phone FROM contacts WHERE id = {}", first["contact"])
    assert contact["phone"] == "+5531988887777"
    resp = await client.post(
        f"/api/v1/conversations/{first['conversation']}/messages",
        json={"type": "text", "text": "Temos sim"},
        headers=setup.headers,
    )
    assert resp.status == 202
    await settle(client)
    [send] = setup.fake.calls_to("/message/sendText")
    assert send.body["number"] == "5531988887777"  # Evolution restores its own JID form


async def test_lid_chats_are_the_phones_contact_with_the_lid_kept(client, setup):
    assert (await post(client, setup, load("webhook_messages_upsert_lid.json"))).status == 200
    plain = with_key(
        "webhook_messages_upsert_lid.json",
        remoteJid="5511976543210@s.whatsapp.net",
        id="PLAIN" + uuid.uuid4().hex[:12].upper(),
    )
    del plain["data"]["key"]["remoteJidAlt"]
    assert (await post(client, setup, plain)).status == 200
    first, second = await messages_of(setup.channel_id)
    assert first["contact"] == second["contact"]
    [contact] = await fetch("SELECT phone FROM contacts WHERE id = {}", first["contact"])
    assert contact["phone"] == "+5511976543210"
    identities = await fetch(
        "SELECT provider_user_id FROM contact_identities WHERE contact = {}", first["contact"]
    )
    assert [i["provider_user_id"] for i in identities] == ["187654321098765@lid"]


async def test_qrcode_route_is_tenant_scoped_and_needs_its_permission(client, setup, make_company):
    url = f"/api/v1/plugins/evolution/channels/{setup.channel_id}/qrcode"
    agent = await setup.company.add("agent")
    resp = await client.get(url, headers=await login(client, agent))
    assert resp.status == 403
    supervisor = await setup.company.add("supervisor")
    assert (await client.get(url, headers=await login(client, supervisor))).status == 200
    other = await make_company()
    other_headers = await login(client, other.owner)
    resp = await client.get(url, headers=other_headers)
    assert (await resp.json())["error"]["code"] == "plugin_not_enabled"
    await enable(client, other_headers)
    resp = await client.get(url, headers=other_headers)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "channel_not_found"
    resp = await client.get(
        f"/api/v1/plugins/evolution/channels/{uuid.uuid4()}/qrcode", headers=setup.headers
    )
    assert resp.status == 404


async def test_qrcode_route_reports_an_evolution_failure(client, setup):
    setup.fake.fail_next("/instance/connect", 500, {"status": 500, "error": "boom"})
    url = f"/api/v1/plugins/evolution/channels/{setup.channel_id}/qrcode"
    resp = await client.get(url, headers=setup.headers)
    assert resp.status == 502
    assert "boom" in (await resp.json())["error"]["message"]


async def test_provisioning_failure_is_shown_and_can_be_retried(
    client, make_company, fake_evolution
):
    fake, server_url = fake_evolution
    company = await make_company()
    headers = await login(client, company.owner)
    await enable(client, headers)
    fake.fail_next("/webhook/set", 500, {"status": 500, "error": "Internal Server Error"})
    resp = await create_channel(client, headers, server_url)
    assert resp.status == 201
    channel = await resp.json()
    assert channel["state"] == "provisioning_failed"
    assert "set the instance's webhook" in channel["state_detail"]
    resp = await client.post(f"/api/v1/channels/{channel['id']}/provision", headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "provisioned"
    assert len(fake.calls_to("/instance/create")) == 2  # the retry reused the instance
    assert fake.instances[INSTANCE]["webhook"]["url"].endswith(channel["id"])


async def test_deactivating_logs_out_and_deletes_the_instance(client, setup):
    setup.fake.connect(INSTANCE)
    resp = await client.delete(f"/api/v1/channels/{setup.channel_id}", headers=setup.headers)
    assert resp.status == 204
    assert [c.path.split("/")[2] for c in setup.fake.calls if c.method == "DELETE"] == [
        "logout",
        "delete",
    ]
    assert INSTANCE not in setup.fake.instances
    assert (await channel_row(setup.channel_id))["state"] == "disconnected"


async def test_loopback_servers_are_refused_without_the_operator_setting(
    client, make_company, monkeypatch
):
    monkeypatch.delenv("GUICHE_EVOLUTION_ALLOW_PRIVATE")
    company = await make_company()
    headers = await login(client, company.owner)
    await enable(client, headers)
    for url in ("http://127.0.0.1:8080", "http://169.254.169.254", "gopher://evo.example.com"):
        resp = await create_channel(client, headers, url)
        assert resp.status == 422, await resp.text()
        details = (await resp.json())["error"]["details"]
        assert details[0]["field"] == "credentials.server_url"


async def state_events(tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await fetch(
        "SELECT data FROM events WHERE tenant = {} AND type = 'channel.state' ORDER BY seq",
        tenant_id,
    )
    return [orjson.loads(row["data"]) for row in rows]


async def test_a_flood_of_identical_connection_updates_is_one_state_event(client, setup):
    """Evolution 2.3.6 posts `connecting` several times a second while it cannot reach
    WhatsApp (the captured body): only the change is recorded and announced."""
    body = real("webhook_connection_update_connecting.json")
    before = len(await state_events(setup.company.tenant_id))
    for _ in range(100):
        assert (await post(client, setup, body)).status == 200
    events = (await state_events(setup.company.tenant_id))[before:]
    assert [(e["state"], e["detail"]) for e in events] == [("connecting", "")]
    assert (await channel_row(setup.channel_id))["state"] == "connecting"
    await post(client, setup, load("webhook_connection_update_open.json"))
    await post(client, setup, body)
    events = (await state_events(setup.company.tenant_id))[before:]
    assert [e["state"] for e in events] == ["connecting", "connected", "connecting"]


async def test_a_send_on_an_unlinked_phone_fails_at_once_and_marks_the_channel(client, setup):
    assert (
        await post(client, setup, load("webhook_messages_upsert_conversation.json"))
    ).status == 200
    [inbound] = await messages_of(setup.channel_id)
    setup.fake.instances[INSTANCE]["state"] = "connecting"
    ids = []
    for text in ("Olá", "Ainda aí?"):
        resp = await client.post(
            f"/api/v1/conversations/{inbound['conversation']}/messages",
            json={"type": "text", "text": text},
            headers=setup.headers,
        )
        assert resp.status == 202
        ids.append((await resp.json())["id"])
        await settle(client)
    rows = await fetch("SELECT status, error FROM messages WHERE id = ANY({})", ids)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    errors = [orjson.loads(r["error"]) if isinstance(r["error"], str) else r["error"] for r in rows]
    assert {e["code"] for e in errors} == {"channel_not_connected"}
    assert setup.fake.calls_to("/message/sendText") == []  # nothing sent, nothing retried
    assert len(setup.fake.calls_to("/instance/connectionState")) == 2
    channel = await channel_row(setup.channel_id)
    assert channel["state"] == "unhealthy"
    assert "not connected" in channel["state_detail"] and "'connecting'" in channel["state_detail"]
    unhealthy = [
        e for e in await state_events(setup.company.tenant_id) if e["state"] == "unhealthy"
    ]
    assert len(unhealthy) == 1  # two failed sends, one change of state


async def test_a_channel_on_a_pre_existing_instance_receives_its_messages(
    client, make_company, fake_evolution
):
    """The instance was made outside Guichê with its own token; Evolution puts that token
    in every webhook body. Guichê learns it on provisioning and stores the messages."""
    fake, server_url = fake_evolution
    fake.instances[INSTANCE] = {
        "id": str(uuid.uuid4()),
        "token": "CAPTOKENE0123456789ABCDEF",
        "state": "open",
        "webhook": None,
        "body": {"integration": "EVOLUTION"},
    }
    company = await make_company()
    headers = await login(client, company.owner)
    await enable(client, headers)
    resp = await create_channel(client, headers, server_url)
    assert resp.status == 201, await resp.text()
    channel = await resp.json()
    assert channel["state"] == "provisioned"
    secret = fake.instances[INSTANCE]["webhook"]["headers"][SECRET_HEADER]
    body = real("webhook_messages_upsert_evolution.json")
    resp = await client.post(
        f"/webhooks/evolution/{channel['id']}",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json", SECRET_HEADER: secret},
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["messages"] == 1
    [stored] = await messages_of(uuid.UUID(channel["id"]))
    assert stored["body"] == "Olá, quero ajuda"
    row = (await Channel.select(Channel.credentials_encrypted).where(Channel.id == channel["id"]))[
        0
    ]
    assert row["credentials_encrypted"]  # the learned token is stored (encrypted)


async def test_the_qr_route_gives_up_when_evolution_never_makes_a_qr(client, setup, monkeypatch):
    """Evolution 2.3.6 answers `{"count": 0}` forever when it cannot reach WhatsApp: past
    the deadline the route (and the channel) say so instead of "connecting" forever."""
    from guiche_evolution.adapter import EvolutionAdapter

    no_qr = real("instance_connect_200_no_qr.json")
    url = f"/api/v1/plugins/evolution/channels/{setup.channel_id}/qrcode"
    monkeypatch.setattr(EvolutionAdapter, "qr_deadline", 3600.0)
    setup.fake.fail_next("/instance/connect", no_qr["status"], no_qr["body"])
    waiting = await (await client.get(url, headers=setup.headers)).json()
    assert (waiting["state"], waiting["detail"]) == ("connecting", "the QR code is being generated")
    monkeypatch.setattr(EvolutionAdapter, "qr_deadline", 0.0)
    setup.fake.fail_next("/instance/connect", no_qr["status"], no_qr["body"])
    resp = await client.get(url, headers=setup.headers)
    assert resp.status == 200
    verdict = await resp.json()
    assert verdict["state"] == "unhealthy" and verdict["qr_code"] is None
    assert "no QR code after 0 s" in verdict["detail"]
    assert "cannot reach WhatsApp" in verdict["detail"]
    channel = await channel_row(setup.channel_id)
    assert (channel["state"], channel["state_detail"]) == ("unhealthy", verdict["detail"])
    # the next request starts a new wait; a QR ends it
    monkeypatch.setattr(EvolutionAdapter, "qr_deadline", 3600.0)
    setup.fake.fail_next("/instance/connect", no_qr["status"], no_qr["body"])
    assert (await (await client.get(url, headers=setup.headers)).json())["state"] == "connecting"
    assert (await (await client.get(url, headers=setup.headers)).json())["qr_code"]
