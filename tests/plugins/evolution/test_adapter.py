"""The adapter against a mocked Evolution (httpx MockTransport): webhook authentication,
sending and its error mapping, instance provisioning, the QR code, and media."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import orjson
import pytest
from guiche_evolution.adapter import (
    SECRET_HEADER,
    WEBHOOK_EVENTS,
    EvolutionAdapter,
    ProvisioningError,
)

from guiche.channels import (
    ConnectionState,
    Media,
    OutboundMedia,
    OutboundMessage,
    PermanentSendError,
    ReadReceipt,
    Recipient,
    RetryableSendError,
    WebhookAuthError,
)

from .conftest import API_KEY, INSTANCE, INSTANCE_TOKEN, SECRET, load, real, real_answer, webhook

pytestmark = pytest.mark.usefixtures("public_dns")

TEXT_FIXTURE = "webhook_messages_upsert_conversation.json"


def body_of(request: httpx.Request) -> dict[str, Any]:
    return orjson.loads(request.content)


def answer(status: int, body: Any, **headers: str) -> Any:
    return lambda request: httpx.Response(status, json=body, headers=headers)


def text(to: str = "+5511987654321", **extra: Any) -> OutboundMessage:
    return OutboundMessage(
        message_id=uuid.uuid4(), to=Recipient(phone=to), kind="text", text="Olá!", **extra
    )


# --- webhook authentication ---------------------------------------------------------------


async def test_the_secret_header_is_required_and_compared(make_adapter):
    adapter = make_adapter()
    body = load(TEXT_FIXTURE)
    assert len((await adapter.parse_webhook(webhook(body))).messages) == 1
    for secret in (None, "", "wrong", SECRET[:-1], SECRET + "x"):
        with pytest.raises(WebhookAuthError):
            await adapter.parse_webhook(webhook(body, secret=secret))


async def test_the_secret_may_ride_in_the_path_for_servers_without_headers(make_adapter):
    adapter: EvolutionAdapter = make_adapter()
    body = load(TEXT_FIXTURE)
    prefix = f"/webhooks/evolution/channel/{adapter.channel.id}/"
    ok = webhook(body, secret=None, path=prefix + SECRET)
    assert len((await adapter.parse_webhook(ok)).messages) == 1
    assert adapter.path_webhook_url().endswith(prefix + SECRET)
    for path in (prefix + "wrong", f"/webhooks/evolution/channel/{uuid.uuid4()}/{SECRET}"):
        with pytest.raises(WebhookAuthError):
            await adapter.parse_webhook(webhook(body, secret=None, path=path))


async def test_the_body_apikey_never_refuses_a_webhook_the_secret_proved(make_adapter):
    """Evolution sends the instance's own token as `apikey`: for a reused instance that is
    not the token Guichê generated, and Evolution treats a 401 as final (the message
    would be lost). The secret is the guard; the body key is only noted."""
    adapter = make_adapter()
    body = real("webhook_messages_upsert_evolution.json")
    assert body["apikey"] == "CAPTOKENE0123456789ABCDEF" != INSTANCE_TOKEN
    for key in (body["apikey"], "Apikey not found", None, "", API_KEY, INSTANCE_TOKEN, 12345):
        batch = await adapter.parse_webhook(webhook({**body, "apikey": key}))
        assert [m.provider_message_id for m in batch.messages] == ["CAPIN0001"]
    with pytest.raises(WebhookAuthError):  # without the secret, nothing
        await adapter.parse_webhook(webhook(body, secret="wrong"))
    null_key = load("webhook_apikey_null.json")
    assert (await adapter.parse_webhook(webhook(null_key))).messages


async def test_another_instances_events_and_bad_bodies(make_adapter):
    adapter = make_adapter()
    body = {**load(TEXT_FIXTURE), "instance": "somebody-else"}
    batch = await adapter.parse_webhook(webhook(body))
    assert batch.is_empty() and batch.ignored == 1
    with pytest.raises(ValueError):
        await adapter.parse_webhook(webhook(b"not json"))
    with pytest.raises(ValueError):
        await adapter.parse_webhook(webhook(b"[1, 2]"))
    with pytest.raises(WebhookAuthError):  # authentication comes before parsing
        await adapter.parse_webhook(webhook(b"not json", secret="wrong"))


async def test_groups_follow_the_channel_option(make_adapter):
    body = load("webhook_messages_upsert_group.json")
    assert (await make_adapter().parse_webhook(webhook(body))).messages == []
    accepted = make_adapter(reject_groups=False)
    assert len((await accepted.parse_webhook(webhook(body))).messages) == 1


# --- sending ---------------------------------------------------------------------------------


async def test_text_is_sent_flat_with_the_apikey_header(make_adapter, requests_seen):
    adapter = make_adapter(answer(201, load("send_text_response.json")))
    result = await adapter.send(
        text(reply_to_provider_message_id="712626B9A1DADB893B9BE4E91F35E485", preview_url=True)
    )
    assert result.provider_message_id == "3EB0EA0798DDF8A1D71D5A"
    assert result.recipient == "5511987654321@s.whatsapp.net"
    [request] = requests_seen
    assert (request.method, request.url.path) == ("POST", f"/message/sendText/{INSTANCE}")
    assert request.headers["apikey"] == API_KEY
    assert body_of(request) == {
        "number": "5511987654321",
        "text": "Olá!",
        "linkPreview": True,
        "quoted": {"key": {"id": "712626B9A1DADB893B9BE4E91F35E485"}},
    }


async def test_recipients_groups_and_lids(make_adapter, requests_seen):
    adapter = make_adapter(answer(201, load("send_text_response.json")))
    group = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(provider_user_id="120363041234567890@g.us"),
        kind="text",
        text="Oi, grupo",
    )
    lid_only = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(provider_user_id="187654321098765@lid"),
        kind="text",
        text="Oi",
    )
    lid_with_phone = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone="+5511976543210", provider_user_id="187654321098765@lid"),
        kind="text",
        text="Oi",
    )
    for message in (group, lid_only, lid_with_phone):
        await adapter.send(message)
    assert [body_of(r)["number"] for r in requests_seen] == [
        "120363041234567890@g.us",
        "187654321098765@lid",
        "5511976543210",
    ]


async def test_media_by_url_or_raw_base64_and_stickers(make_adapter, requests_seen):
    adapter = make_adapter(answer(201, load("send_media_response.json")))
    document = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone="+5541996543210"),
        kind="media",
        media=OutboundMedia(
            kind="document",
            url="https://arquivos.exemplo.com.br/boletos/2025-03/4512.pdf",
            mime_type="application/pdf",
            filename="boleto-4512.pdf",
            caption="Segue o boleto atualizado",
        ),
    )
    result = await adapter.send(document)
    assert result.provider_message_id == "3EB0C4CDEF4798976FA8B0"
    assert body_of(requests_seen[0]) == load("send_media_request.json")
    inline = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone="+5541996543210"),
        kind="media",
        media=OutboundMedia(
            kind="image", data_base64="data:image/png;base64,iVBORw0KGgo=", mime_type="image/png"
        ),
    )
    await adapter.send(inline)
    sent = body_of(requests_seen[1])
    assert requests_seen[1].url.path == f"/message/sendMedia/{INSTANCE}"
    assert (sent["mediatype"], sent["media"], sent["mimetype"]) == (
        "image",
        "iVBORw0KGgo=",
        "image/png",
    )
    assert "fileName" not in sent
    sticker = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone="+5541996543210"),
        kind="media",
        media=OutboundMedia(kind="sticker", url="https://cdn.example.com/s.webp"),
    )
    await adapter.send(sticker)
    assert requests_seen[2].url.path == f"/message/sendSticker/{INSTANCE}"
    assert body_of(requests_seen[2]) == {
        "number": "5541996543210",
        "sticker": "https://cdn.example.com/s.webp",
    }


async def test_templates_and_provider_media_ids_are_refused_without_calling(
    make_adapter, requests_seen
):
    adapter = make_adapter(answer(201, load("send_text_response.json")))
    template = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone="+5511987654321"),
        kind="template",
        template={"name": "boas_vindas"},
    )
    with pytest.raises(PermanentSendError) as info:
        await adapter.send(template)
    assert info.value.code == "templates_unsupported"
    by_id = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone="+5511987654321"),
        kind="media",
        media=OutboundMedia(kind="image", provider_media_id="123"),
    )
    with pytest.raises(PermanentSendError):
        await adapter.send(by_id)
    assert requests_seen == []


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(make_adapter, status):
    adapter = make_adapter(answer(status, {"status": status, "error": "Internal Server Error"}))
    with pytest.raises(RetryableSendError) as info:
        await adapter.send(text())
    assert info.value.code == f"http_{status}"


async def test_throttling_carries_retry_after(make_adapter):
    adapter = make_adapter(answer(429, {"message": "slow down"}, **{"Retry-After": "7"}))
    with pytest.raises(RetryableSendError) as info:
        await adapter.send(text())
    assert info.value.retry_after == 7.0


async def test_timeouts_and_connection_errors_are_retryable(make_adapter):
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    for handler, code in ((timeout, "timeout"), (refused, "unreachable")):
        with pytest.raises(RetryableSendError) as info:
            await make_adapter(handler).send(text())
        assert info.value.code == code


async def test_bad_requests_fail_the_message_with_evolutions_reason(make_adapter):
    adapter = make_adapter(answer(400, load("error_400.json")))
    with pytest.raises(PermanentSendError) as info:
        await adapter.send(text("+5511900001111"))
    assert info.value.code == "not_on_whatsapp"
    assert "5511900001111 is not on WhatsApp" in info.value.message
    assert not info.value.channel_unhealthy
    nested = make_adapter(answer(400, load("error_400_validation.json")))
    with pytest.raises(PermanentSendError) as info:
        await nested.send(text())
    assert 'instance requires property "text"' in info.value.message
    assert info.value.code == "http_400"


@pytest.mark.parametrize("name", ["error_401.json", "error_404.json"])
async def test_refused_key_or_missing_instance_marks_the_channel_unhealthy(make_adapter, name):
    body = load(name)
    adapter = make_adapter(answer(body["status"], body))
    with pytest.raises(PermanentSendError) as info:
        await adapter.send(text())
    assert info.value.channel_unhealthy
    assert body["error"] in info.value.message or "does not exist" in info.value.message


async def test_a_success_without_a_message_id_is_not_retried(make_adapter):
    adapter = make_adapter(answer(201, {"status": "PENDING"}))
    with pytest.raises(PermanentSendError) as info:
        await adapter.send(text())
    assert info.value.code == "unexpected_response"


STATE = ("GET", f"/instance/connectionState/{INSTANCE}")
SEND = ("POST", f"/message/sendText/{INSTANCE}")


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ("connection_state_connecting.json", "'connecting'"),
        ("connection_state_close.json", "'close'"),
    ],
)
async def test_a_send_on_an_unlinked_phone_fails_at_once(make_adapter, requests_seen, state, said):
    """The state is asked first: nothing is sent, nothing retried, and the channel is
    marked (channel_unhealthy) with why."""
    adapter = make_adapter(routes({STATE: real_answer(state)}), evolution_state=None)
    with pytest.raises(PermanentSendError) as info:
        await adapter.send(text())
    assert info.value.code == "channel_not_connected"
    assert info.value.channel_unhealthy
    assert said in info.value.message and "QR code" in info.value.message
    assert [(r.method, r.url.path) for r in requests_seen] == [STATE]


@pytest.mark.parametrize(
    "failure", ["send_text_500_connection_closed.json", "send_text_500_not_started.json"]
)
async def test_evolutions_session_errors_are_not_connected_not_transient(
    make_adapter, requests_seen, failure
):
    """The phone dropped between the check and the send: Evolution's 500 "Connection
    Closed" / "reading 'onWhatsApp'" fails the message as channel_not_connected."""
    states = iter(["connection_state_open.json", "connection_state_connecting.json"])
    table = {SEND: real_answer(failure)}

    def handle(request: httpx.Request) -> httpx.Response:
        if (request.method, request.url.path) == STATE:
            status, body = real_answer(next(states))
            return httpx.Response(status, json=body)
        return routes(table)(request)

    adapter = make_adapter(handle, evolution_state=None)
    with pytest.raises(PermanentSendError) as info:
        await adapter.send(text())
    assert info.value.code == "channel_not_connected"
    assert info.value.channel_unhealthy
    assert info.value.details["status"] == 500
    assert [(r.method, r.url.path) for r in requests_seen] == [STATE, SEND, STATE]


async def test_an_open_state_is_trusted_for_a_while(make_adapter, requests_seen):
    adapter = make_adapter(
        routes(
            {
                STATE: real_answer("connection_state_open.json"),
                SEND: (201, load("send_text_response.json")),
            }
        ),
        evolution_state=None,
    )
    for _ in range(3):
        await adapter.send(text())
    assert [(r.method, r.url.path) for r in requests_seen] == [STATE, SEND, SEND, SEND]
    adapter._open_until = 0.0  # the TTL ran out
    await adapter.send(text())
    assert [(r.method, r.url.path) for r in requests_seen][-2:] == [STATE, SEND]


async def test_a_deleted_instance_is_unhealthy_not_unlinked(make_adapter):
    adapter = make_adapter(
        routes({STATE: real_answer("connection_state_404_missing.json")}), evolution_state=None
    )
    with pytest.raises(PermanentSendError) as info:
        await adapter.send(text())
    assert info.value.code == "http_404" and info.value.channel_unhealthy
    assert "does not exist" in info.value.message


async def test_redirects_are_not_followed(make_adapter, requests_seen):
    adapter = make_adapter(
        lambda request: httpx.Response(302, headers={"Location": "http://169.254.169.254/"})
    )
    with pytest.raises(PermanentSendError):
        await adapter.send(text())
    assert len(requests_seen) == 1


async def test_an_internal_server_address_is_never_called(make_adapter, requests_seen, public_dns):
    public_dns["evo.example.com"] = ["10.0.0.8"]
    adapter = make_adapter(answer(201, load("send_text_response.json")))
    with pytest.raises(PermanentSendError) as info:
        await adapter.send(text())
    assert info.value.code == "target_not_allowed"
    with pytest.raises(ProvisioningError) as provisioning:
        await adapter.provision()
    assert "not allowed" in provisioning.value.message
    assert requests_seen == []


# --- provisioning -------------------------------------------------------------------------------


def routes(table: dict[tuple[str, str], Any]) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        found = table.get((request.method, request.url.path))
        if found is None:
            return httpx.Response(404, json={"status": 404, "response": {"message": ["nope"]}})
        status, body = found
        return httpx.Response(status, json=body)

    return handle


async def test_provision_creates_the_instance_then_sets_the_nested_webhook(
    make_adapter, requests_seen, monkeypatch
):
    monkeypatch.setenv("GUICHE_PUBLIC_URL", "https://atendimento.exemplo.com.br")
    adapter: EvolutionAdapter = make_adapter(
        routes(
            {
                ("POST", "/instance/create"): (201, load("instance_create_response.json")),
                ("POST", f"/webhook/set/{INSTANCE}"): (201, {"id": "1"}),
            }
        ),
        read_receipts=True,
    )
    await adapter.provision()
    create, webhook_set = requests_seen
    assert create.headers["apikey"] == API_KEY
    created = body_of(create)
    assert created["instanceName"] == INSTANCE
    assert created["integration"] == "WHATSAPP-BAILEYS"
    assert created["token"] == INSTANCE_TOKEN
    assert (created["groupsIgnore"], created["alwaysOnline"], created["readMessages"]) == (
        True,
        False,
        True,
    )
    assert body_of(webhook_set) == {
        "webhook": {
            "enabled": True,
            "url": f"https://atendimento.exemplo.com.br/webhooks/evolution/{adapter.channel.id}",
            "byEvents": False,
            "base64": True,
            "headers": {SECRET_HEADER: SECRET},
            "events": list(WEBHOOK_EVENTS),
        }
    }
    assert set(WEBHOOK_EVENTS) == set(load("webhook_set_request.json")["webhook"]["events"])


FETCH = ("GET", "/instance/fetchInstances")
CREATE = ("POST", "/instance/create")
SET = ("POST", f"/webhook/set/{INSTANCE}")


async def test_an_existing_instance_is_adopted_with_its_real_token(make_adapter, requests_seen):
    """403 "in use" (Evolution's answer whatever the key): the instance's own token is
    learned from fetchInstances, so the stored config says what Evolution will send."""
    fetched = real_answer("fetch_instances_200.json")
    adapter = make_adapter(
        routes(
            {
                CREATE: real_answer("instance_create_403_in_use.json"),
                FETCH: fetched,
                SET: real_answer("webhook_find_200.json"),
            }
        )
    )
    await adapter.provision()
    assert [(r.method, r.url.path) for r in requests_seen] == [CREATE, FETCH, SET]
    assert requests_seen[1].url.params["instanceName"] == INSTANCE
    assert adapter.settings.instance_token.get_secret_value() == fetched[1][0]["token"]
    assert adapter.config.instance_token.get_secret_value() == "CAPTOKENA0123456789ABCDEF"


async def test_an_instance_key_adopts_its_own_instance_and_sets_the_webhook(make_adapter):
    """With the instance's own token as the key, create says 403 (the name is checked
    first) and fetchInstances lists that one instance."""
    adapter = make_adapter(
        routes(
            {
                CREATE: real_answer("instance_create_403_in_use.json"),
                FETCH: real_answer("fetch_instances_200.json"),
                SET: (201, {"id": "1"}),
            }
        ),
        api_key="CAPTOKENA0123456789ABCDEF",
    )
    await adapter.provision()


@pytest.mark.parametrize(
    "create", ["instance_create_401_wrong_key.json", "instance_create_403_in_use.json"]
)
async def test_a_wrong_key_fails_naming_the_key(make_adapter, requests_seen, create):
    """A free name answers 401 to create, a taken one 403; either way fetchInstances
    answers 401, and the channel says the key was refused (not "does not exist")."""
    adapter = make_adapter(
        routes(
            {
                CREATE: real_answer(create),
                FETCH: real_answer("fetch_instances_401_wrong_key.json"),
                SET: real_answer("webhook_set_404_missing_instance.json"),
            }
        ),
        api_key="WRONG-KEY-0123456789",
    )
    with pytest.raises(ProvisioningError) as info:
        await adapter.provision()
    assert info.value.code == "api_key_refused"
    assert "The API key was refused" in info.value.message
    assert "AUTHENTICATION_API_KEY" in info.value.message
    assert "does not exist" not in info.value.message
    assert SET not in [(r.method, r.url.path) for r in requests_seen]


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({("POST", "/instance/create"): (500, {"error": "boom"})}, "create the Evolution"),
        (
            {
                ("POST", "/instance/create"): (201, {}),
                ("POST", f"/webhook/set/{INSTANCE}"): (400, load("error_400_validation.json")),
            },
            "set the instance's webhook",
        ),
    ],
)
async def test_provisioning_failures_say_why(make_adapter, table, words):
    adapter = make_adapter(routes(table))
    with pytest.raises(ProvisioningError) as info:
        await adapter.provision()
    assert words in info.value.message
    assert info.value.code.startswith("http_")


async def test_provisioning_an_unreachable_server(make_adapter):
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ProvisioningError) as info:
        await make_adapter(refused).provision()
    assert info.value.code == "unreachable"


async def test_qr_code_shapes(make_adapter):
    connect = ("GET", f"/instance/connect/{INSTANCE}")
    qr = await make_adapter(
        routes({connect: (200, load("instance_connect_response.json"))})
    ).qr_code()
    assert qr.state is ConnectionState.QR_REQUIRED
    assert base64.b64decode(qr.qr_code or "").startswith(b"\x89PNG")
    assert qr.raw["code"].startswith("2@")
    opened = make_adapter(routes({connect: (200, load("connection_state_response.json"))}))
    assert (await opened.qr_code()).state is ConnectionState.CONNECTED
    pairing = {"pairingCode": "WZYEH1YY", "code": None, "base64": None, "count": 1}
    paired = await make_adapter(routes({connect: (200, pairing)})).qr_code()
    assert (paired.state, paired.pairing_code) == (ConnectionState.QR_REQUIRED, "WZYEH1YY")
    empty = {"pairingCode": None, "code": None, "base64": None, "count": 0}
    assert (await make_adapter(routes({connect: (200, empty)})).connect()).state is (
        ConnectionState.CONNECTING
    )
    failed = make_adapter(routes({connect: (200, {"error": True, "message": "Error: boom"})}))
    with pytest.raises(ProvisioningError, match="boom"):
        await failed.qr_code()
    missing = make_adapter(routes({}))
    with pytest.raises(ProvisioningError, match="does not exist"):
        await missing.qr_code()


async def test_disconnect_logs_out_then_deletes(make_adapter, requests_seen):
    ok = (200, {"status": "SUCCESS"})
    adapter = make_adapter(
        routes(
            {
                ("DELETE", f"/instance/logout/{INSTANCE}"): ok,
                ("DELETE", f"/instance/delete/{INSTANCE}"): ok,
            }
        )
    )
    await adapter.disconnect()
    assert [(r.method, r.url.path) for r in requests_seen] == [
        ("DELETE", f"/instance/logout/{INSTANCE}"),
        ("DELETE", f"/instance/delete/{INSTANCE}"),
    ]


async def test_disconnect_tolerates_a_gone_instance_and_waits_for_the_logout(
    make_adapter, requests_seen, monkeypatch
):
    monkeypatch.setattr(EvolutionAdapter, "delete_retry_delay", 0.0)
    await make_adapter(routes({})).disconnect()  # 404 everywhere: already gone
    answers = iter([(400, {"response": {"message": ["needs to be disconnected"]}}), (200, {})])

    def handle(request: httpx.Request) -> httpx.Response:
        if "logout" in request.url.path:
            return httpx.Response(400, json={"response": {"message": ["not connected"]}})
        status, body = next(answers)
        return httpx.Response(status, json=body)

    requests_seen.clear()
    await make_adapter(handle).disconnect()
    assert [r.url.path.split("/")[2] for r in requests_seen] == ["logout", "delete", "delete"]
    with pytest.raises(ProvisioningError):
        await make_adapter(answer(500, {"error": "boom"})).disconnect()


# --- media ---------------------------------------------------------------------------------------


async def test_fetch_media_uses_inline_bytes_or_asks_evolution(make_adapter, requests_seen):
    inline = Media(data_base64=base64.b64encode(b"hello").decode(), mime_type="text/plain")
    fetched = await make_adapter().fetch_media(inline)
    assert (fetched.data, fetched.mime_type) == (b"hello", "text/plain")
    assert requests_seen == []
    remote = make_adapter(
        answer(201, {"base64": base64.b64encode(b"video").decode(), "mimetype": "video/mp4"})
    )
    fetched = await remote.fetch_media(Media(provider_media_id="3AAFD96893800232AF9D"))
    assert (fetched.data, fetched.mime_type) == (b"video", "video/mp4")
    assert body_of(requests_seen[0]) == {"message": {"key": {"id": "3AAFD96893800232AF9D"}}}
    with pytest.raises(RetryableSendError):
        await make_adapter(answer(500, {})).fetch_media(Media(provider_media_id="x"))
    with pytest.raises(PermanentSendError):
        await make_adapter(answer(400, load("error_404.json"))).fetch_media(
            Media(provider_media_id="x")
        )
    with pytest.raises(PermanentSendError):
        await make_adapter().fetch_media(Media(data_base64="%%%"))


# --- read receipts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "jid"),
    [
        (Recipient(phone="+5511987654321"), "5511987654321@s.whatsapp.net"),
        (
            Recipient(phone="+5511987654321", provider_user_id="5511987654321@s.whatsapp.net"),
            "5511987654321@s.whatsapp.net",
        ),
        (Recipient(provider_user_id="123456789@lid"), "123456789@lid"),
    ],
)
async def test_mark_read_marks_the_customers_message(make_adapter, requests_seen, sender, jid):
    adapter = make_adapter(answer(201, {"message": "Read messages", "read": "success"}))
    await adapter.mark_read(ReadReceipt(provider_message_id="3EB0ABC", sender=sender))
    [request] = requests_seen
    assert (request.method, request.url.path) == ("POST", f"/chat/markMessageAsRead/{INSTANCE}")
    assert body_of(request) == {
        "readMessages": [{"remoteJid": jid, "fromMe": False, "id": "3EB0ABC"}]
    }


async def test_mark_read_errors_are_typed(make_adapter):
    adapter = make_adapter(answer(400, load("error_400.json")))
    with pytest.raises(PermanentSendError):
        await adapter.mark_read(
            ReadReceipt(provider_message_id="3EB0ABC", sender=Recipient(phone="+5511900001111"))
        )
