"""Evolution webhook bodies → normalised batches: every shared fixture, plus variants with
unknown fields, missing optional fields and shapes of other Evolution versions."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
from typing import Any

import pytest
from guiche_evolution.parse import event_name, parse_payload

from guiche.channel_host.whatsapp_web import parse_vcard
from guiche.channels import (
    ConnectionState,
    DeliveryStatus,
    InboundMessage,
    MessageType,
    WebhookBatch,
)

from .conftest import load, real, webhook_fixtures

NOW = dt.datetime(2025, 3, 14, 13, 30, tzinfo=dt.UTC)


def parse(body: dict[str, Any], *, accept_groups: bool = False) -> WebhookBatch:
    return parse_payload(body, accept_groups=accept_groups, now=NOW)


def one_message(name: str, **kwargs: Any) -> InboundMessage:
    batch = parse(load(name), **kwargs)
    assert len(batch.messages) == 1, batch
    return batch.messages[0]


@pytest.mark.parametrize("name", webhook_fixtures())
def test_every_fixture_parses_to_what_its_event_carries(name):
    body = load(name)
    batch = parse(body, accept_groups=True)
    event = body["event"]
    if event in ("messages.upsert", "send.message"):
        assert len(batch.messages) == 1
        message = batch.messages[0]
        assert message.provider_message_id == body["data"]["key"]["id"]
        assert message.raw and "base64" not in message.raw.get("message", {})
        assert message.timestamp == dt.datetime.fromtimestamp(
            body["data"]["messageTimestamp"], dt.UTC
        )
    elif event == "messages.update":
        assert [s.provider_message_id for s in batch.statuses] == [body["data"]["keyId"]]
    else:
        assert event in ("connection.update", "qrcode.updated")
        assert len(batch.connection) == 1


def test_event_names_in_any_case_are_one_event():
    assert event_name("MESSAGES_UPSERT") == event_name("messages-upsert") == "messages.upsert"
    body = load("webhook_messages_upsert_conversation.json")
    body["event"] = "MESSAGES_UPSERT"
    assert len(parse(body).messages) == 1


def test_plain_text_in_conversation_ignores_message_context_info():
    message = one_message("webhook_messages_upsert_conversation.json")
    assert message.type is MessageType.TEXT
    assert message.text == "Bom dia! Vocês entregam em Pinheiros?"
    assert message.sender.phone == "5511987654321"
    assert message.sender.name == "Ana Beatriz Souza"
    assert message.from_me is False


def test_older_extended_text_message_is_text():
    message = one_message("webhook_messages_upsert_extended_text.json")
    assert (message.type, message.text) == (
        MessageType.TEXT,
        "Segue o link do pedido: https://loja.exemplo.com.br/p/4512",
    )


def test_quoted_reply_comes_from_data_context_info_or_the_content():
    message = one_message("webhook_messages_upsert_reply.json")
    assert message.text == "Pode ser amanhã às 10h?"
    assert message.reply_to_provider_message_id == "3EB0262842275C99338513"
    # the pre-2.2 shape: the quote inside extendedTextMessage.contextInfo
    body = load("webhook_messages_upsert_reply.json")
    context = body["data"].pop("contextInfo")
    body["data"]["message"] = {"extendedTextMessage": {"text": "ok", "contextInfo": context}}
    body["data"]["messageType"] = "extendedTextMessage"
    assert parse(body).messages[0].reply_to_provider_message_id == "3EB0262842275C99338513"


def test_image_with_inline_base64_keeps_the_bytes_once():
    body = load("webhook_messages_upsert_image_base64.json")
    message = one_message("webhook_messages_upsert_image_base64.json")
    assert message.type is MessageType.IMAGE
    media = message.media
    assert media is not None
    data = base64.b64decode(media.data_base64 or "")
    assert data.startswith(b"\xff\xd8\xff")
    assert media.sha256 == hashlib.sha256(data).hexdigest()
    assert (media.size, media.mime_type, media.caption) == (159, "image/jpeg", "Comprovante do Pix")
    assert media.provider_media_id == body["data"]["key"]["id"]
    assert "base64" not in message.raw["message"]
    assert message.preview() == "Comprovante do Pix"


def test_voice_note_video_document_and_sticker():
    audio = one_message("webhook_messages_upsert_audio.json")
    assert audio.type is MessageType.AUDIO and audio.media is not None
    assert (audio.media.voice, audio.media.size, audio.media.mime_type) == (
        True,
        2048,
        "audio/ogg; codecs=opus",
    )
    assert base64.b64decode(audio.media.data_base64 or "").startswith(b"OggS")

    video = one_message("webhook_messages_upsert_video.json")
    assert video.type is MessageType.VIDEO and video.media is not None
    assert video.media.size == 1843276  # a long.js object
    assert video.media.data_base64 is None  # fetched later through Evolution
    assert video.media.caption == "Olha o defeito na tampa"

    document = one_message("webhook_messages_upsert_document.json")
    assert document.type is MessageType.DOCUMENT and document.media is not None
    assert (document.media.filename, document.media.caption) == (
        "nota-fiscal-4512.pdf",
        "Segue a NF",
    )
    assert base64.b64decode(document.media.data_base64 or "").startswith(b"%PDF")

    sticker = one_message("webhook_messages_upsert_sticker.json")
    assert sticker.type is MessageType.STICKER and sticker.media is not None
    assert (sticker.media.mime_type, sticker.media.size, sticker.media.animated) == (
        "image/webp",
        18244,
        False,
    )


def test_raw_baileys_objects_long_numbers_and_keyed_bytes():
    message = one_message("webhook_messages_upsert_long_fields.json")
    assert message.type is MessageType.IMAGE and message.media is not None
    data = base64.b64decode(message.media.data_base64 or "")
    assert message.media.size == 159 == len(data)
    assert message.media.sha256 == hashlib.sha256(data).hexdigest()


def test_dropped_pin_location():
    message = one_message("webhook_messages_upsert_location.json")
    assert message.type is MessageType.LOCATION and message.location is not None
    assert (message.location.latitude, message.location.longitude) == (-30.0471, -51.2291)
    assert message.location.name is None


def test_contact_card_reads_the_whatsapp_id_from_the_vcard():
    message = one_message("webhook_messages_upsert_contact.json")
    assert message.type is MessageType.CONTACTS
    [card] = message.contacts
    assert (card.name, card.phones) == ("Ricardo Gomes", ["+5511955554444"])
    several = load("webhook_messages_upsert_contact.json")
    single = several["data"]["message"].pop("contactMessage")
    several["data"]["message"]["contactsArrayMessage"] = {"contacts": [single, single]}
    several["data"]["messageType"] = "contactsArrayMessage"
    assert len(parse(several).messages[0].contacts) == 2


def test_vcard_without_waid_keeps_the_number_and_emails():
    card = parse_vcard(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Loja\r\nTEL;type=CELL:+55 11 4000-0000\r\n"
        "EMAIL:contato@loja.example\r\nORG:Loja Exemplo;\r\nEND:VCARD"
    )
    assert (card.name, card.phones, card.emails, card.organization) == (
        "Loja",
        ["+55 11 4000-0000"],
        ["contato@loja.example"],
        "Loja Exemplo",
    )


def test_reaction_points_at_the_reacted_message():
    message = one_message("webhook_messages_upsert_reaction.json")
    assert message.type is MessageType.REACTION and message.reaction is not None
    assert message.reaction.target_provider_message_id == "3EB0262842275C99338513"
    assert message.reaction.emoji == "👍"
    removed = load("webhook_messages_upsert_reaction.json")
    removed["data"]["message"]["reactionMessage"]["text"] = ""
    assert parse(removed).messages[0].reaction.emoji == ""  # type: ignore[union-attr]


def test_groups_are_ignored_unless_accepted():
    body = load("webhook_messages_upsert_group.json")
    rejected = parse(body)
    assert rejected.is_empty() and rejected.ignored == 1
    [message] = parse(body, accept_groups=True).messages
    assert message.sender.provider_user_id == "120363041234567890@g.us"
    assert message.sender.phone is None
    assert message.sender.name is None  # pushName is the participant's, not the group's


def test_from_me_is_the_customers_chat_without_our_name():
    message = one_message("webhook_messages_upsert_from_me.json")
    assert message.from_me is True
    assert message.sender.phone == "5561981234567"
    assert message.sender.name is None


def test_ninth_digit_jid_is_passed_as_received_for_core_to_normalise():
    message = one_message("webhook_messages_upsert_ninth_digit.json")
    assert message.sender.phone == "553188887777"


def test_lid_chat_uses_the_alternate_phone_and_keeps_the_lid():
    message = one_message("webhook_messages_upsert_lid.json")
    assert message.sender.phone == "5511976543210"
    assert message.sender.provider_user_id == "187654321098765@lid"
    body = load("webhook_messages_upsert_lid.json")
    del body["data"]["key"]["remoteJidAlt"]
    [alone] = parse(body).messages
    assert (alone.sender.phone, alone.sender.provider_user_id) == (None, "187654321098765@lid")


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("webhook_messages_update_server_ack.json", DeliveryStatus.SENT),
        ("webhook_messages_update_delivery_ack.json", DeliveryStatus.DELIVERED),
        ("webhook_messages_update_read.json", DeliveryStatus.READ),
        ("webhook_messages_update_played.json", DeliveryStatus.READ),
        ("webhook_messages_update_error.json", DeliveryStatus.FAILED),
    ],
)
def test_status_updates_are_keyed_by_key_id(name, status):
    body = load(name)
    [update] = parse(body).statuses
    assert update.provider_message_id == body["data"]["keyId"]
    assert update.provider_message_id != body["data"]["messageId"]
    assert update.status is status
    assert (update.error is not None) == (status is DeliveryStatus.FAILED)


def test_status_variants_numeric_codes_old_key_shape_and_our_own_receipts():
    body = load("webhook_messages_update_read.json")
    body["data"]["status"] = 3
    assert parse(body).statuses[0].status is DeliveryStatus.DELIVERED
    older = load("webhook_messages_update_read.json")
    data = older["data"]
    older["data"] = {"key": {"id": data["keyId"], "fromMe": True}, "update": {"status": 4}}
    assert parse(older).statuses[0].provider_message_id == data["keyId"]
    theirs = load("webhook_messages_update_read.json")
    theirs["data"]["fromMe"] = False  # we read the customer's message: not a delivery status
    assert parse(theirs).statuses == []
    for unknown in ("PENDING", "DELETED", None):
        other = load("webhook_messages_update_read.json")
        other["data"]["status"] = unknown
        assert parse(other).ignored == 1
    batched = load("webhook_messages_update_read.json")
    batched["data"] = [batched["data"], {**batched["data"], "keyId": "OTHER"}]
    assert [s.provider_message_id for s in parse(batched).statuses] == [
        "3EB0EA0798DDF8A1D71D5A",
        "OTHER",
    ]


def test_connection_states():
    [opened] = parse(load("webhook_connection_update_open.json")).connection
    assert opened.state is ConnectionState.CONNECTED
    assert opened.me == "5511912345678"
    [connecting] = parse(load("webhook_connection_update_connecting.json")).connection
    assert connecting.state is ConnectionState.CONNECTING
    [closed] = parse(load("webhook_connection_update_close.json")).connection
    assert closed.state is ConnectionState.DISCONNECTED and "428" in closed.detail
    for reason in (401, "403", {"low": 401, "high": 0}):
        body = load("webhook_connection_update_close.json")
        body["data"]["statusReason"] = reason
        assert parse(body).connection[0].state is ConnectionState.QR_REQUIRED
    refused = load("webhook_connection_update_close.json")
    refused["data"]["state"] = "refused"
    assert parse(refused).connection[0].state is ConnectionState.QR_REQUIRED
    odd = load("webhook_connection_update_close.json")
    odd["data"]["state"] = "sleeping"
    assert parse(odd).ignored == 1


def test_qrcode_updated_gives_the_png_without_the_data_uri():
    body = load("webhook_qrcode_updated.json")
    [update] = parse(body).connection
    assert update.state is ConnectionState.QR_REQUIRED
    png = base64.b64decode(update.qr_code or "")
    assert png.startswith(b"\x89PNG")
    assert update.raw["code"] == body["data"]["qrcode"]["code"]
    limit = {"event": "qrcode.updated", "data": {"message": "QR code limit reached"}}
    [stale] = parse(limit).connection
    assert stale.qr_code is None and "limit" in stale.detail


def test_send_message_echoes_are_our_own_from_me_messages():
    """Core dedups the echo on its provider id, or merges it into the sent message when
    it beats the worker's commit (tests/core/races)."""
    body = load("webhook_send_message.json")
    [echo] = parse(body).messages
    assert echo.from_me is True
    assert echo.provider_message_id == body["data"]["key"]["id"]
    assert echo.text == "Olá, Ana! Seu pedido saiu para entrega."
    assert (echo.sender.phone, echo.sender.name) == ("5511987654321", None)  # not "Você"
    del body["data"]["key"]["fromMe"]  # a send.message is ours whatever its key says
    assert parse(body).messages[0].from_me is True


def test_a_bare_number_chat_is_the_phones_contact():
    """Evolution 2.3.6's `send.message` echo on an EVOLUTION-integration instance names
    the chat by the bare number, not a JID: it is the same customer."""
    [echo] = parse(real("webhook_send_message_evolution.json")).messages
    assert echo.sender.phone == "5511987654321" and echo.sender.provider_user_id is None
    assert echo.from_me and echo.text == "Oi Maria"


def test_unknown_events_types_and_fields_never_break_parsing():
    assert parse({"event": "chats.upsert", "data": [{"id": "x"}, {"id": "y"}]}).ignored == 2
    assert parse({"event": "presence.update"}).ignored == 1
    body = load("webhook_messages_upsert_conversation.json")
    body["data"]["brandNewField"] = {"anything": [1, 2]}
    body["data"]["message"] = {"pollCreationMessageV3": {"name": "Qual sabor?"}}
    body["data"]["messageType"] = "pollCreationMessageV3"
    [poll] = parse(body).messages
    assert poll.type is MessageType.UNSUPPORTED and poll.raw["brandNewField"]


def test_missing_optional_fields_fall_back_safely():
    body = load("webhook_messages_upsert_conversation.json")
    for field_name in ("pushName", "messageType", "messageTimestamp", "status", "source"):
        del body["data"][field_name]
    [message] = parse(body).messages
    assert message.sender.name is None and message.timestamp == NOW
    image = load("webhook_messages_upsert_sticker.json")
    content = image["data"]["message"]["stickerMessage"]
    for field_name in ("mimetype", "fileLength", "fileSha256"):
        del content[field_name]
    [sticker] = parse(image).messages
    assert sticker.media is not None
    assert (sticker.media.mime_type, sticker.media.size, sticker.media.sha256) == (
        "image/webp",
        None,
        None,
    )


def test_wrapped_messages_are_unwrapped():
    body = load("webhook_messages_upsert_conversation.json")
    body["data"]["message"] = {
        "ephemeralMessage": {"message": {"extendedTextMessage": {"text": "some"}}}
    }
    body["data"]["messageType"] = "ephemeralMessage"
    assert parse(body).messages[0].text == "some"
    document = load("webhook_messages_upsert_document.json")
    inner = copy.deepcopy(document["data"]["message"])
    document["data"]["message"] = {"documentWithCaptionMessage": {"message": inner}}
    document["data"]["messageType"] = "documentWithCaptionMessage"
    assert parse(document).messages[0].media.filename == "nota-fiscal-4512.pdf"  # type: ignore[union-attr]


def test_protocol_broadcast_and_malformed_items_are_ignored():
    revoke = load("webhook_messages_upsert_conversation.json")
    revoke["data"]["message"] = {"protocolMessage": {"type": "REVOKE"}}
    revoke["data"]["messageType"] = "protocolMessage"
    story = load("webhook_messages_upsert_conversation.json")
    story["data"]["key"]["remoteJid"] = "status@broadcast"
    no_key = load("webhook_messages_upsert_conversation.json")
    del no_key["data"]["key"]
    for body in (revoke, story, no_key):
        batch = parse(body)
        assert batch.is_empty() and batch.ignored == 1


def test_interactive_replies():
    body = load("webhook_messages_upsert_conversation.json")
    body["data"]["message"] = {
        "listResponseMessage": {
            "title": "Financeiro",
            "singleSelectReply": {"selectedRowId": "dept-fin"},
        }
    }
    body["data"]["messageType"] = "listResponseMessage"
    [message] = parse(body).messages
    assert message.type is MessageType.INTERACTIVE and message.interactive is not None
    assert (message.interactive.kind, message.interactive.id) == ("list_reply", "dept-fin")
    body["data"]["message"] = {
        "buttonsResponseMessage": {"selectedButtonId": "yes", "selectedDisplayText": "Sim"}
    }
    body["data"]["messageType"] = "buttonsResponseMessage"
    assert parse(body).messages[0].interactive.title == "Sim"  # type: ignore[union-attr]
