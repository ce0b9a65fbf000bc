"""`OutboundMessage` → the JSON body of `POST /{phone_number_id}/messages`.

Phones go in `to` as digits (E.164 without "+"); a user known only by a business-scoped
user id (a username user) goes in `recipient`. `biz_opaque_callback_data` carries our
message id, which Meta echoes in status webhooks (useful when tracing a message).
"""

from __future__ import annotations

from typing import Any

from guiche.channels import OutboundMedia, OutboundMessage, TemplateComponent, TemplateParameter

#: Fields Meta accepts on each media kind besides the id/link.
_CAPTION_KINDS = frozenset({"image", "video", "document"})


def message_body(message: OutboundMessage, *, media_id: str | None = None) -> dict[str, Any]:
    """The send request; `media_id` replaces inline bytes already uploaded to /media."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    if message.to.phone:
        body["to"] = "".join(ch for ch in message.to.phone if ch.isdigit())
    else:
        body["recipient"] = message.to.provider_user_id
    if message.reply_to_provider_message_id:
        body["context"] = {"message_id": message.reply_to_provider_message_id}
    if message.kind == "text":
        body["type"] = "text"
        body["text"] = {"preview_url": message.preview_url, "body": message.text}
    elif message.kind == "media":
        assert message.media is not None  # OutboundMessage guarantees it
        body["type"] = message.media.kind
        body[message.media.kind] = _media(message.media, media_id)
    else:
        assert message.template is not None
        body["type"] = "template"
        template: dict[str, Any] = {
            "name": message.template.name,
            "language": {"code": message.template.language},
        }
        if message.template.components:
            template["components"] = [_component(c) for c in message.template.components]
        body["template"] = template
    body["biz_opaque_callback_data"] = str(message.message_id)
    return body


def _media(media: OutboundMedia, uploaded_id: str | None) -> dict[str, Any]:
    if uploaded_id or media.provider_media_id:
        part: dict[str, Any] = {"id": uploaded_id or media.provider_media_id}
    else:
        part = {"link": media.url}
    if media.caption and media.kind in _CAPTION_KINDS:
        part["caption"] = media.caption
    if media.filename and media.kind == "document":
        part["filename"] = media.filename
    return part


def _component(component: TemplateComponent) -> dict[str, Any]:
    out: dict[str, Any] = {"type": component.type}
    if component.sub_type:
        out["sub_type"] = component.sub_type
    if component.index is not None:
        out["index"] = str(component.index)
    out["parameters"] = [_parameter(p) for p in component.parameters]
    return out


def _parameter(parameter: TemplateParameter) -> dict[str, Any]:
    """Meta's parameter object: `{"type": t, t: value}`; dict values pass through."""
    kind, value = parameter.type, parameter.value
    if kind == "text":
        # A dict carries named-parameter fields, e.g. {"text": "Ana", "parameter_name": "nome"}.
        return (
            {"type": "text", **value}
            if isinstance(value, dict)
            else {"type": "text", "text": str(value)}
        )
    if kind in ("image", "document", "video"):
        media = value if isinstance(value, dict) else {"link": str(value)}
        return {"type": kind, kind: media}
    if kind in ("currency", "date_time"):
        detail = value if isinstance(value, dict) else {"fallback_value": str(value)}
        return {"type": kind, kind: detail}
    return {"type": "payload", "payload": str(value)}
