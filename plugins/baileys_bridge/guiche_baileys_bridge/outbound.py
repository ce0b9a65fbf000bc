"""Guichê's `OutboundMessage` → a bridge `send` frame, and its `send_result` → a
`SendResult` or a typed error."""

from __future__ import annotations

import base64
from typing import Any

from guiche.channels import (
    ChatKind,
    OutboundMessage,
    PermanentSendError,
    RetryableSendError,
    SendResult,
)
from guiche_baileys_bridge.wire import buffer

#: error.code values the sidecar sends, retryable or not (the frame also says).
RETRYABLE = frozenset({"not_connected", "rate_limited", "timeout", "internal"})


def jid_for(message: OutboundMessage) -> str:
    """Where to send: the chat id for groups, an `@lid` or JID as known, else the phone."""
    to = message.to
    if to.chat_kind is not ChatKind.DIRECT and to.provider_user_id:
        return to.provider_user_id
    if to.phone:
        return f"{to.phone.lstrip('+')}@s.whatsapp.net"
    assert to.provider_user_id
    return to.provider_user_id


def content_for(message: OutboundMessage) -> dict[str, Any]:
    """Baileys `AnyMessageContent` for a text or media message."""
    if message.kind == "text":
        return {"text": message.text or ""}
    if message.kind == "template":
        raise PermanentSendError(
            "WhatsApp Web has no templates: send text", code="templates_unsupported"
        )
    media = message.media
    assert media is not None
    if media.data_base64:
        source: Any = buffer(base64.b64decode(media.data_base64))
    elif media.url:
        source = {"url": media.url}
    else:
        raise PermanentSendError("media needs its bytes or a URL", code="media_unavailable")
    kind = media.kind
    content: dict[str, Any] = {kind: source}
    if media.mime_type:
        content["mimetype"] = media.mime_type
    if media.caption and kind in ("image", "video", "document"):
        content["caption"] = media.caption
    if kind == "document":
        content["fileName"] = media.filename or "file"
        content.setdefault("mimetype", "application/octet-stream")
    if kind == "audio" and (media.mime_type or "").startswith("audio/ogg"):
        content["ptt"] = True
    return content


def send_frame(message: OutboundMessage) -> dict[str, Any]:
    to = jid_for(message)
    data: dict[str, Any] = {
        "request_id": str(message.message_id),
        "to": to,
        "content": content_for(message),
    }
    if message.reply_to_provider_message_id:
        data["quoted"] = {
            "key": {"remoteJid": to, "fromMe": False, "id": message.reply_to_provider_message_id}
        }
    return data


def send_result(data: dict[str, Any]) -> SendResult:
    """A `send_result` frame's data: the WhatsApp key id, or the typed error."""
    if data.get("ok") is True:
        key = data.get("key") if isinstance(data.get("key"), dict) else {}
        key_id = key.get("id")
        if isinstance(key_id, str) and key_id:
            return SendResult(provider_message_id=key_id, raw=data)
        raise RetryableSendError("the sidecar answered without a message id", code="internal")
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    code = str(error.get("code") or "internal")
    text = str(error.get("message") or code)
    retryable = error.get("retryable")
    if retryable is True or (retryable is None and code in RETRYABLE):
        retry_after = 30.0 if code == "not_connected" else None
        raise RetryableSendError(text, code=code, retry_after=retry_after, details=error)
    raise PermanentSendError(text, code=code, details=error)
