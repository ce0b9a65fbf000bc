"""Bridge frames → normalised types, and sends ↔ frames, from the shared fixtures."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from guiche_baileys_bridge.outbound import send_frame, send_result
from guiche_baileys_bridge.parse import (
    connection_update,
    inbound_message,
    is_final_close,
    qr_update,
    status_update,
)
from guiche_baileys_bridge.wire import decode, encode

from guiche.channels import (
    ChatKind,
    ConnectionState,
    DeliveryStatus,
    MessageType,
    OutboundMedia,
    OutboundMessage,
    PermanentSendError,
    Recipient,
    RetryableSendError,
)

from .conftest import load


def test_text_message() -> None:
    message = inbound_message(load("bridge_message_text.json")["data"])
    assert message is not None
    assert (message.type, message.text) == (MessageType.TEXT, "Vocês abrem no sábado?")
    assert (message.sender.phone, message.sender.name) == ("5511987654321", "Ana Beatriz Souza")
    assert message.provider_message_id == "3A4D0BC3C466A3E715AC"
    assert message.timestamp == dt.datetime.fromtimestamp(1741961100, dt.UTC)
    assert not message.from_me


def test_image_carries_the_downloaded_bytes() -> None:
    data = load("bridge_message_image.json")["data"]
    message = inbound_message(data)
    assert message is not None and message.media is not None
    assert message.type is MessageType.IMAGE
    assert message.media.data_base64 == data["media"]["base64"]
    assert (message.media.caption, message.media.mime_type) == ("Foto da etiqueta", "image/jpeg")
    assert message.media.sha256 == data["media"]["sha256"]


def _wa(message: dict, **key: object) -> dict:
    base = {"remoteJid": "553188887777@s.whatsapp.net", "fromMe": False, "id": "K1"}
    return {"message": {"key": {**base, **key}, "messageTimestamp": 1741961100, "message": message}}


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        ({"audioMessage": {"mimetype": "audio/ogg; codecs=opus", "ptt": True}}, MessageType.AUDIO),
        ({"videoMessage": {"mimetype": "video/mp4"}}, MessageType.VIDEO),
        ({"documentMessage": {"fileName": "nota.pdf"}}, MessageType.DOCUMENT),
        ({"stickerMessage": {}}, MessageType.STICKER),
        (
            {"locationMessage": {"degreesLatitude": -23.5, "degreesLongitude": -46.6}},
            MessageType.LOCATION,
        ),
        (
            {
                "contactMessage": {
                    "displayName": "Ana",
                    "vcard": (
                        "BEGIN:VCARD\nFN:Ana\nTEL;waid=5511987654321:+55 11 98765-4321\nEND:VCARD"
                    ),
                }
            },
            MessageType.CONTACTS,
        ),
        ({"reactionMessage": {"key": {"id": "OUT1"}, "text": "👍"}}, MessageType.REACTION),
        ({"pollCreationMessage": {"name": "?"}}, MessageType.UNSUPPORTED),
    ],
)
def test_message_kinds(content: dict, kind: MessageType) -> None:
    message = inbound_message(_wa(content))
    assert message is not None and message.type is kind


def test_reply_quoting_and_ninth_digit() -> None:
    content = {"extendedTextMessage": {"text": "sim", "contextInfo": {"stanzaId": "OUT9"}}}
    message = inbound_message(_wa(content))
    assert message is not None
    assert message.reply_to_provider_message_id == "OUT9"
    assert message.sender.phone == "553188887777"  # core adds the ninth digit (E.164)


def test_lid_resolved_to_the_phone_when_baileys_gives_it() -> None:
    message = inbound_message(
        _wa(
            {"conversation": "oi"},
            remoteJid="123456789@lid",
            remoteJidAlt="5511987654321@s.whatsapp.net",
        )
    )
    assert message is not None
    assert (message.sender.phone, message.sender.provider_user_id) == (
        "5511987654321",
        "123456789@lid",
    )
    bare = inbound_message(_wa({"conversation": "oi"}, remoteJid="123456789@lid"))
    assert bare is not None and bare.sender.phone is None


def test_groups_only_when_the_channel_accepts_them() -> None:
    frame = _wa(
        {"conversation": "oi"}, remoteJid="1203630@g.us", participant="5511987654321@s.whatsapp.net"
    )
    assert inbound_message(frame) is None
    message = inbound_message(frame, accept_groups=True)
    assert message is not None and message.chat is not None
    assert (message.chat.id, message.chat.kind) == ("1203630@g.us", ChatKind.GROUP)
    assert message.sender.phone == "5511987654321"
    assert inbound_message(_wa({"conversation": "x"}, remoteJid="status@broadcast")) is None


def test_from_me_is_outbound_from_the_phone() -> None:
    message = inbound_message(_wa({"conversation": "digitado no celular"}, fromMe=True))
    assert message is not None and message.from_me and message.sender.name is None


def test_acks_are_statuses_of_our_messages() -> None:
    update = status_update(load("bridge_ack.json")["data"])
    assert update is not None
    assert (update.provider_message_id, update.status) == (
        "3EB032E7A08B200830A002",
        DeliveryStatus.READ,
    )
    failed = status_update(
        {"key": {"id": "X", "fromMe": True}, "status": "ERROR", "status_code": 0}
    )
    assert failed is not None and failed.status is DeliveryStatus.FAILED
    assert status_update({"key": {"id": "X", "fromMe": False}, "status_code": 4}) is None
    assert status_update({"key": {"id": "X", "fromMe": True}, "status_code": 1}) is None  # pending


def test_connection_states() -> None:
    opened = connection_update(load("bridge_connection_open.json")["data"])
    assert opened is not None
    assert (opened.state, opened.me, opened.detail) == (
        ConnectionState.CONNECTED,
        "5511912345678",
        "Loja Centro",
    )
    closed_data = load("bridge_connection_close.json")["data"]
    closed = connection_update(closed_data)
    assert closed is not None and closed.state is ConnectionState.QR_REQUIRED
    assert is_final_close(closed_data)
    banned = connection_update(
        {"state": "close", "last_disconnect": {"status_code": 403, "reason": "forbidden"}}
    )
    assert banned is not None and banned.state is ConnectionState.UNHEALTHY
    flaky = {"state": "close", "will_reconnect": True, "last_disconnect": {"status_code": 428}}
    dropped = connection_update(flaky)
    assert dropped is not None and dropped.state is ConnectionState.DISCONNECTED
    assert not is_final_close(flaky)
    watchdog = connection_update(
        {"state": "connecting", "last_disconnect": {"status_code": None, "reason": "watchdog"}}
    )
    assert watchdog is not None and watchdog.state is ConnectionState.CONNECTING
    assert watchdog.detail == "reconnecting (watchdog)"
    qr = qr_update(load("bridge_qr.json")["data"])
    assert qr.state is ConnectionState.QR_REQUIRED and qr.qr_code and qr.qr_code.startswith("2@")


def test_unknown_versions_and_garbage_are_ignored() -> None:
    assert decode(b'{"v": 2, "type": "message", "data": {}}') is None
    assert decode(b"not json") is None
    assert decode(b"[1]") is None
    frame = decode(encode("qr", "s", {"qr": "x"}))
    assert frame == {"v": 1, "type": "qr", "session": "s", "data": {"qr": "x"}}


def _outbound(**fields: object) -> OutboundMessage:
    values: dict = {
        "message_id": uuid.uuid4(),
        "to": Recipient(phone="+5511987654321"),
        "kind": "text",
        "text": "oi",
    }
    values.update(fields)
    return OutboundMessage(**values)


def test_send_frames() -> None:
    expected = load("bridge_send.json")["data"]
    message = _outbound(
        text=expected["content"]["text"], reply_to_provider_message_id="3A4D0BC3C466A3E715AC"
    )
    frame = send_frame(message)
    assert frame == {**expected, "request_id": str(message.message_id)}
    media = send_frame(
        _outbound(
            kind="media",
            text=None,
            media=OutboundMedia(
                kind="document", data_base64="JVBERg==", filename="a.pdf", caption="nota"
            ),
        )
    )
    assert media["content"]["document"] == {"type": "Buffer", "data": "JVBERg=="}
    assert (media["content"]["fileName"], media["content"]["caption"]) == ("a.pdf", "nota")
    group = send_frame(
        _outbound(to=Recipient(provider_user_id="1203630@g.us", chat_kind=ChatKind.GROUP))
    )
    assert group["to"] == "1203630@g.us"


def test_send_results() -> None:
    result = send_result(load("bridge_send_result_ok.json")["data"])
    assert result.provider_message_id == "3EB032E7A08B200830A002"
    with pytest.raises(PermanentSendError) as permanent:
        send_result(load("bridge_send_result_error.json")["data"])
    assert permanent.value.code == "not_on_whatsapp"
    for code in ("not_connected", "rate_limited", "timeout", "internal"):
        with pytest.raises(RetryableSendError):
            send_result({"ok": False, "error": {"code": code, "message": code, "retryable": True}})
