"""Every Meta webhook fixture (and our own variants) normalises as the contract expects."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from guiche_meta_cloud.adapter import MetaCloudAdapter
from guiche_meta_cloud.config import MetaCloudConfig

from guiche.channels import (
    ChannelInfo,
    DeliveryStatus,
    InboundMessage,
    MessageType,
    WebhookAuthError,
    WebhookBatch,
    WebhookRequest,
)
from tests.plugins.meta_cloud.conftest import (
    APP_SECRET,
    FIXTURE_PHONE_ID,
    config,
    fixture_bytes,
    sign,
)


def make_adapter(**overrides: Any) -> MetaCloudAdapter:
    info = ChannelInfo(id=uuid.uuid4(), tenant_id=uuid.uuid4(), type="meta_cloud", name="WA")
    return MetaCloudAdapter(info, MetaCloudConfig.model_validate(config(**overrides)))


def request(body: bytes, *, secret: str = APP_SECRET) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        path="/webhooks/meta_cloud/x",
        headers={"X-Hub-Signature-256": sign(body, secret), "Content-Type": "application/json"},
        query={},
        body=body,
    )


async def parse(name_or_body: str | bytes, **overrides: Any) -> WebhookBatch:
    body = fixture_bytes(name_or_body) if isinstance(name_or_body, str) else name_or_body
    return await make_adapter(**overrides).parse_webhook(request(body))


async def only_message(name: str) -> InboundMessage:
    batch = await parse(name)
    assert len(batch.messages) == 1 and not batch.statuses
    message = batch.messages[0]
    raw = json.loads(fixture_bytes(name))["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message.raw == raw  # the provider's payload is kept whole
    assert message.provider_message_id == raw["id"]
    assert message.channel_ref == FIXTURE_PHONE_ID
    assert message.timestamp == dt.datetime.fromtimestamp(int(raw["timestamp"]), dt.UTC)
    return message


async def test_text() -> None:
    message = await only_message("webhook_text.json")
    assert message.type is MessageType.TEXT
    assert message.text and message.text.startswith("Oi, boa tarde!")
    assert message.sender.phone == "5511987654321"
    assert message.sender.name == "Ana Beatriz Souza"
    assert message.reply_to_provider_message_id is None


async def test_reply_context() -> None:
    message = await only_message("webhook_reply.json")
    assert message.text == "Pode ser amanhã de manhã, até 11h."
    assert message.reply_to_provider_message_id == (
        "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFEVFMjkzMEQ0RDlGMzMwMzEwOTYyAA=="
    )


@pytest.mark.parametrize(
    ("name", "kind", "caption", "mime", "media_id"),
    [
        (
            "webhook_image.json",
            MessageType.IMAGE,
            "Comprovante do Pix",
            "image/jpeg",
            "3035608771711194",
        ),
        (
            "webhook_audio.json",
            MessageType.AUDIO,
            None,
            "audio/ogg; codecs=opus",
            "5436064288094893",
        ),
        (
            "webhook_video.json",
            MessageType.VIDEO,
            "Olha o defeito na tampa",
            "video/mp4",
            "1707874511830032",
        ),
        (
            "webhook_document.json",
            MessageType.DOCUMENT,
            "Segue a nota fiscal",
            "application/pdf",
            "4268612899999725",
        ),
        ("webhook_sticker.json", MessageType.STICKER, None, "image/webp", "3919038271150311"),
    ],
)
async def test_media(
    name: str, kind: MessageType, caption: str | None, mime: str, media_id: str
) -> None:
    message = await only_message(name)
    assert message.type is kind
    assert message.media is not None
    assert message.media.provider_media_id == media_id
    assert message.media.caption == caption
    assert message.media.mime_type == mime
    assert message.media.sha256
    if kind is MessageType.AUDIO:
        assert message.media.voice is True
    if kind is MessageType.DOCUMENT:
        assert message.media.filename == "nota-fiscal-março-4512.pdf"
    if kind is MessageType.STICKER:
        assert message.media.animated is False


async def test_location() -> None:
    message = await only_message("webhook_location.json")
    assert message.type is MessageType.LOCATION
    assert message.location is not None
    assert (message.location.latitude, message.location.longitude) == (-30.0471, -51.2291)
    assert message.location.name == "Loja Praia de Belas"
    assert message.location.address and message.location.address.startswith("Av. Borges")


async def test_contacts() -> None:
    message = await only_message("webhook_contacts.json")
    assert message.type is MessageType.CONTACTS
    assert message.sender.name == "Luciana Martins"  # the author, not the shared card
    (card,) = message.contacts
    assert card.name == "Ricardo Gomes"
    assert card.phones == ["5585995554444", "+55 85 3222-1100"]
    assert card.emails == ["ricardo.gomes@exemplo.com.br"]
    assert card.organization == "Gomes Materiais de Construção"
    assert card.raw["urls"][0]["url"].startswith("https://gomesmateriais")
    assert message.preview() == "👤 Ricardo Gomes"  # what lists and notifications show


async def test_interactive_button_reply() -> None:
    message = await only_message("webhook_interactive_button_reply.json")
    assert message.type is MessageType.INTERACTIVE
    assert message.interactive is not None
    assert (message.interactive.kind, message.interactive.id, message.interactive.title) == (
        "button_reply",
        "confirmar_entrega",
        "Confirmar",
    )
    assert message.reply_to_provider_message_id


async def test_interactive_list_reply() -> None:
    message = await only_message("webhook_interactive_list_reply.json")
    assert message.interactive is not None
    assert message.interactive.kind == "list_reply"
    assert message.interactive.id == "dept_financeiro"
    assert message.interactive.description == "Boletos, 2ª via e reembolsos"


async def test_template_quick_reply_button() -> None:
    message = await only_message("webhook_button.json")
    assert message.type is MessageType.INTERACTIVE
    assert message.interactive is not None
    assert message.interactive.kind == "quick_reply"
    assert message.interactive.id == "FALAR_ATENDENTE:4512"
    assert message.interactive.title == "Falar com atendente"
    assert message.preview() == "Falar com atendente"


async def test_reaction() -> None:
    message = await only_message("webhook_reaction.json")
    assert message.type is MessageType.REACTION
    assert message.reaction is not None
    assert message.reaction.emoji == "❤️"
    assert message.reaction.target_provider_message_id.startswith("wamid.")


async def test_order_is_kept_as_unsupported_with_its_payload() -> None:
    message = await only_message("webhook_order.json")
    assert message.type is MessageType.UNSUPPORTED
    assert message.raw["order"]["product_items"][0]["item_price"] == 34.9
    assert message.text == "[order: 2 items: Quero retirar na loja, por favor.]"


async def test_system_message_without_contacts() -> None:
    message = await only_message("webhook_system.json")
    assert message.type is MessageType.UNSUPPORTED
    assert message.sender.phone == "5511987654321"
    assert message.sender.name is None
    assert message.text and "changed from 5511987654321 to 5511912340000" in message.text
    assert message.raw["system"]["wa_id"] == "5511912340000"


async def test_unsupported_message_keeps_errors() -> None:
    message = await only_message("webhook_unsupported.json")
    assert message.type is MessageType.UNSUPPORTED
    assert message.text == "[unsupported: poll_creation]"
    assert message.raw["errors"][0]["code"] == 131051


async def test_username_user_without_phone() -> None:
    message = await only_message("webhook_username_user.json")
    assert message.sender.phone is None
    assert message.sender.provider_user_id == "BR.7319046628150274"
    assert message.sender.username == "@bia.souza"
    assert message.sender.name == "Bia"


async def only_status(name: str) -> Any:
    batch = await parse(name)
    assert not batch.messages and len(batch.statuses) == 1
    return batch.statuses[0]


async def test_status_sent_with_free_service_pricing() -> None:
    status = await only_status("webhook_status_sent.json")
    assert status.status is DeliveryStatus.SENT
    assert status.recipient == "5511987654321"
    assert status.pricing is not None
    assert status.pricing.pricing_model == "PMP"
    assert status.pricing.category == "service"
    assert status.pricing.billable is False
    assert (status.pricing.cost, status.pricing.currency) == (0.0, "USD")
    assert status.pricing.conversation_id is None  # v24+: no conversation object


async def test_status_delivered_is_billed_from_the_price_table() -> None:
    status = await only_status("webhook_status_delivered.json")
    assert status.status is DeliveryStatus.DELIVERED
    assert status.pricing is not None
    assert (status.pricing.category, status.pricing.billable) == ("utility", True)
    assert status.pricing.cost == 0.0068
    custom = await parse(
        "webhook_status_delivered.json", prices={"Utility": 0.5}, price_currency="BRL"
    )
    assert custom.statuses[0].pricing is not None
    assert (custom.statuses[0].pricing.cost, custom.statuses[0].pricing.currency) == (0.5, "BRL")


async def test_status_read_has_no_pricing() -> None:
    status = await only_status("webhook_status_read.json")
    assert status.status is DeliveryStatus.READ
    assert status.pricing is None


async def test_status_failed_carries_the_error() -> None:
    status = await only_status("webhook_status_failed.json")
    assert status.status is DeliveryStatus.FAILED
    assert status.error is not None
    assert status.error.code == "131047"
    assert status.error.title == "Re-engagement message"
    assert "24 hours" in status.error.details["details"]


async def test_legacy_status_with_conversation_object() -> None:
    status = await only_status("webhook_status_with_conversation_legacy.json")
    assert status.pricing is not None
    assert status.pricing.pricing_model == "CBP"
    assert status.pricing.conversation_id == "76bd89092f579f27f964002fd431acf7"
    assert status.pricing.conversation_origin == "marketing"
    assert status.pricing.cost == 0.0625


async def test_batch_keeps_only_this_channels_number() -> None:
    batch = await parse("webhook_batch_many.json")
    assert len(batch.messages) == 3 and len(batch.statuses) == 3
    assert {m.channel_ref for m in batch.messages} == {FIXTURE_PHONE_ID}
    assert batch.ignored == 2  # the other number's message and status
    other = await parse("webhook_batch_many.json", phone_number_id="301234567890456")
    assert [m.type for m in other.messages] == [MessageType.LOCATION]
    assert other.messages[0].location is not None
    assert other.messages[0].location.name is None  # a dropped pin: coordinates only
    assert len(other.statuses) == 1


async def test_unknown_phone_number_id_is_ignored_on_a_channel_url() -> None:
    batch = await parse("webhook_unknown_phone_number_id.json")
    assert batch.is_empty() and batch.ignored == 1


async def test_signature_is_required() -> None:
    adapter = make_adapter()
    body = fixture_bytes("webhook_text.json")
    with pytest.raises(WebhookAuthError):
        await adapter.parse_webhook(request(body, secret="wrong"))
    unsigned = WebhookRequest(method="POST", path="/", headers={}, query={}, body=body)
    with pytest.raises(WebhookAuthError):
        await adapter.parse_webhook(unsigned)
    with pytest.raises(WebhookAuthError):  # a channel without an app secret takes no POSTs
        await make_adapter(app_secret=None).parse_webhook(request(body))


def envelope(value: dict[str, Any], field: str = "messages") -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "551130304040", "phone_number_id": FIXTURE_PHONE_ID},
        **value,
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"value": value, "field": field}]}],
    }
    return json.dumps(body).encode()


async def test_unknown_fields_and_types_are_tolerated() -> None:
    body = envelope(
        {
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511987654321", "new": 1}],
            "messages": [
                {
                    "from": "5511987654321",
                    "id": "wamid.NEW1",
                    "timestamp": "1741958100",
                    "type": "hologram",
                    "hologram": {"depth": 3},
                    "brand_new_field": True,
                },
                {  # a known type with its payload missing: kept, never dropped
                    "from": "5511987654321",
                    "id": "wamid.NEW2",
                    "timestamp": "1741958101",
                    "type": "location",
                    "location": {},
                },
                {
                    "from": "5511987654321",
                    "id": "wamid.NEW3",
                    "timestamp": "1741958102",
                    "type": "interactive",
                    "interactive": {"type": "nfm_reply", "nfm_reply": {"body": "Sent"}},
                },
            ],
            "statuses": [
                {"id": "wamid.X", "status": "deleted", "timestamp": "1741958100"},
                {"id": "wamid.Y", "status": "delivered", "timestamp": "1741958100"},
            ],
        }
    )
    batch = await parse(body)
    assert [m.type for m in batch.messages] == [MessageType.UNSUPPORTED] * 3
    assert batch.messages[0].text == "[hologram]"
    assert batch.messages[0].raw["hologram"] == {"depth": 3}
    assert batch.messages[2].text == "Sent"
    assert [s.provider_message_id for s in batch.statuses] == ["wamid.Y"]
    assert batch.statuses[0].recipient is None and batch.statuses[0].pricing is None
    assert batch.ignored == 1


async def test_other_fields_and_objects_are_ignored() -> None:
    template_update = envelope({"event": "APPROVED"}, field="message_template_status_update")
    assert (await parse(template_update)).ignored == 1
    page = json.dumps({"object": "page", "entry": []}).encode()
    assert (await parse(page)).ignored == 1


async def test_message_echo_from_the_business_app_is_outbound() -> None:
    body = envelope(
        {
            "message_echoes": [
                {
                    "from": "551130304040",
                    "to": "5511987654321",
                    "id": "wamid.ECHO1",
                    "timestamp": "1741958100",
                    "type": "text",
                    "text": {"body": "Respondi pelo celular"},
                }
            ]
        },
        field="smb_message_echoes",
    )
    (message,) = (await parse(body)).messages
    assert message.from_me is True
    assert message.sender.phone == "5511987654321"
    assert message.text == "Respondi pelo celular"


async def test_message_without_any_sender_is_ignored_not_fatal() -> None:
    body = envelope(
        {"messages": [{"id": "wamid.Z", "timestamp": "1", "type": "text", "text": {"body": "?"}}]}
    )
    batch = await parse(body)
    assert batch.is_empty() and batch.ignored == 1
