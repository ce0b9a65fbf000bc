"""Meta's `whatsapp_business_account` webhook → normalised messages and statuses.

One POST can carry several entries (WABAs), each with several changes, each for one
phone number (`value.metadata.phone_number_id`) and with `messages[]` and/or
`statuses[]`. Every item is tagged with its phone_number_id (`channel_ref`) so a
caller can route it. Nothing Meta sends is silently dropped: message types we do not
model (order, system, unsupported, new ones) become `UNSUPPORTED` with the raw payload,
and a message that fails to normalise falls back to the same.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from guiche.channels import (
    InboundMessage,
    InteractiveReply,
    Location,
    Media,
    MessageType,
    ProviderError,
    Reaction,
    Sender,
    SharedContact,
    StatusUpdate,
)
from guiche_meta_cloud.pricing import parse_pricing

log = logging.getLogger("guiche.plugin.meta_cloud")

OBJECT = "whatsapp_business_account"
MESSAGES_FIELD = "messages"
ECHOES_FIELD = "smb_message_echoes"  # sent from the WhatsApp Business app (coexistence)

_MEDIA = {
    "image": MessageType.IMAGE,
    "audio": MessageType.AUDIO,
    "video": MessageType.VIDEO,
    "document": MessageType.DOCUMENT,
    "sticker": MessageType.STICKER,
}
_STATUSES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "played": "read",  # a voice note played has been read
    "failed": "failed",
}


@dataclass
class ChangeBatch:
    """What one change carried for one phone number."""

    phone_number_id: str
    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)


@dataclass
class ParsedWebhook:
    changes: list[ChangeBatch] = field(default_factory=list)
    #: Parts recognised but not for us: other fields, unknown statuses, senderless items.
    ignored: int = 0

    def by_phone(self) -> dict[str, ChangeBatch]:
        """All messages and statuses grouped by phone_number_id, in payload order."""
        grouped: dict[str, ChangeBatch] = {}
        for change in self.changes:
            batch = grouped.setdefault(change.phone_number_id, ChangeBatch(change.phone_number_id))
            batch.messages.extend(change.messages)
            batch.statuses.extend(change.statuses)
        return grouped


def load_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a webhook body (ValueError when it is not one)."""
    data = orjson.loads(body)
    if not isinstance(data, dict):
        raise ValueError("a Meta webhook body is a JSON object")
    return data


def parse_webhook_payload(data: Mapping[str, Any]) -> ParsedWebhook:
    parsed = ParsedWebhook()
    if data.get("object") != OBJECT:
        log.info("ignoring webhook object %r", data.get("object"))
        parsed.ignored += 1
        return parsed
    for entry in _dicts(data.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            kind = change.get("field")
            if not isinstance(value, Mapping) or kind not in (MESSAGES_FIELD, ECHOES_FIELD):
                parsed.ignored += 1  # template status updates, account updates, ...
                continue
            metadata = value.get("metadata")
            phone_number_id = str((metadata or {}).get("phone_number_id") or "")
            if not phone_number_id:
                parsed.ignored += 1
                continue
            batch = ChangeBatch(phone_number_id)
            if kind == ECHOES_FIELD:
                _echoes(value, batch, parsed)
            else:
                _messages(value, batch, parsed)
                _statuses(value, batch, parsed)
            parsed.changes.append(batch)
    return parsed


# --- messages ----------------------------------------------------------------------------


def _messages(value: Mapping[str, Any], batch: ChangeBatch, parsed: ParsedWebhook) -> None:
    profiles = _profiles(value.get("contacts"))
    for raw in _dicts(value.get("messages")):
        sender = _sender(raw, profiles)
        if sender is None:
            log.warning("message without a sender ignored", extra={"wamid": raw.get("id")})
            parsed.ignored += 1
            continue
        message = _inbound(raw, sender, batch.phone_number_id)
        if message is not None:
            batch.messages.append(message)
        else:
            parsed.ignored += 1


def _echoes(value: Mapping[str, Any], batch: ChangeBatch, parsed: ParsedWebhook) -> None:
    """Messages the business typed in the WhatsApp Business app: stored as outbound."""
    for raw in _dicts(value.get("message_echoes")):
        to = raw.get("to")
        if not to:
            parsed.ignored += 1
            continue
        message = _inbound(raw, Sender(phone=str(to)), batch.phone_number_id, from_me=True)
        if message is not None:
            batch.messages.append(message)
        else:
            parsed.ignored += 1


def _profiles(contacts: Any) -> dict[str, Mapping[str, Any]]:
    """wa_id and user_id → the contact entry (with its profile name and username)."""
    found: dict[str, Mapping[str, Any]] = {}
    for contact in _dicts(contacts):
        for key in ("wa_id", "user_id"):
            if contact.get(key):
                found[str(contact[key])] = contact
    return found


def _sender(raw: Mapping[str, Any], profiles: Mapping[str, Mapping[str, Any]]) -> Sender | None:
    phone = raw.get("from")
    user_id = raw.get("from_user_id")
    contact = profiles.get(str(phone)) or profiles.get(str(user_id))
    if contact is None and len(profiles) == 1:
        contact = next(iter(profiles.values()))
    contact = contact or {}
    profile = contact.get("profile") if isinstance(contact.get("profile"), Mapping) else {}
    phone = phone or contact.get("wa_id")
    user_id = user_id or contact.get("user_id")
    if not phone and not user_id:
        return None
    return Sender(
        phone=str(phone) if phone else None,
        provider_user_id=str(user_id) if user_id else None,
        name=_text(profile.get("name")),
        username=_text(profile.get("username")),
    )


def _inbound(
    raw: Mapping[str, Any], sender: Sender, phone_number_id: str, *, from_me: bool = False
) -> InboundMessage | None:
    wamid = raw.get("id")
    if not wamid:
        return None
    common: dict[str, Any] = {
        "provider_message_id": str(wamid),
        "sender": sender,
        "timestamp": _timestamp(raw.get("timestamp")),
        "reply_to_provider_message_id": _text(_get(raw, "context", "id")),
        "from_me": from_me,
        "channel_ref": phone_number_id,
        "raw": dict(raw),
    }
    try:
        return InboundMessage(**common, **_content(raw))
    except (ValidationError, ValueError, TypeError, KeyError) as exc:
        log.warning(
            "message kept as unsupported: it did not normalise",
            extra={"wamid": wamid, "type": raw.get("type"), "error": str(exc)[:300]},
        )
        return InboundMessage(**common, type=MessageType.UNSUPPORTED)


def _content(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The typed part of a message: its type and payload fields."""
    kind = str(raw.get("type") or "")
    body = raw.get(kind) if isinstance(raw.get(kind), Mapping) else {}
    if kind == "text":
        return {"type": MessageType.TEXT, "text": body.get("body") or ""}
    if kind in _MEDIA:
        return {"type": _MEDIA[kind], "media": _media(body)}
    if kind == "location":
        return {"type": MessageType.LOCATION, "location": Location.model_validate(_location(body))}
    if kind == "contacts":
        cards = [_contact(card) for card in _dicts(raw.get("contacts"))]
        return {"type": MessageType.CONTACTS, "contacts": cards}
    if kind == "interactive":
        return _interactive(body)
    if kind == "button":
        reply = InteractiveReply(
            kind="quick_reply", id=_text(body.get("payload")), title=str(body.get("text") or "")
        )
        return {"type": MessageType.INTERACTIVE, "interactive": reply}
    if kind == "reaction":
        reaction = Reaction(
            target_provider_message_id=str(body["message_id"]), emoji=body.get("emoji") or ""
        )
        return {"type": MessageType.REACTION, "reaction": reaction}
    # order, system, unsupported, request_welcome and types Meta adds later.
    return {"type": MessageType.UNSUPPORTED, "text": _describe(kind, body)}


def _media(body: Mapping[str, Any]) -> Media:
    return Media(
        provider_media_id=_text(body.get("id")),
        url=_text(body.get("url")),
        mime_type=_text(body.get("mime_type")),
        filename=_text(body.get("filename")),
        caption=_text(body.get("caption")),
        sha256=_text(body.get("sha256")),
        size=body.get("file_size") if isinstance(body.get("file_size"), int) else None,
        voice=bool(body.get("voice")),
        animated=bool(body.get("animated")),
    )


def _location(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "latitude": body["latitude"],
        "longitude": body["longitude"],
        "name": _text(body.get("name")),
        "address": _text(body.get("address")),
        "url": _text(body.get("url")),
    }


def _contact(card: Mapping[str, Any]) -> SharedContact:
    name = card.get("name") if isinstance(card.get("name"), Mapping) else {}
    full = name.get("formatted_name") or " ".join(
        part for part in (name.get("first_name"), name.get("last_name")) if part
    )
    org = card.get("org") if isinstance(card.get("org"), Mapping) else {}
    return SharedContact(
        name=str(full or ""),
        phones=[str(p.get("wa_id") or p.get("phone")) for p in _dicts(card.get("phones"))],
        emails=[str(e["email"]) for e in _dicts(card.get("emails")) if e.get("email")],
        organization=_text(org.get("company")),
        raw=dict(card),
    )


def _interactive(body: Mapping[str, Any]) -> dict[str, Any]:
    kind = body.get("type")
    if kind in ("button_reply", "list_reply"):
        reply = body.get(kind) or {}
        interactive = InteractiveReply(
            kind=kind,
            id=_text(reply.get("id")),
            title=str(reply.get("title") or ""),
            description=_text(reply.get("description")),
        )
        return {"type": MessageType.INTERACTIVE, "interactive": interactive}
    # e.g. nfm_reply (a WhatsApp Flow's answer): kept whole in raw.
    reply = body.get(kind) if isinstance(body.get(kind), Mapping) else {}
    return {"type": MessageType.UNSUPPORTED, "text": _text(reply.get("body")) or f"[{kind}]"}


def _describe(kind: str, body: Mapping[str, Any]) -> str:
    """A short text for agents for the types we keep as unsupported."""
    if kind == "system":
        return str(body.get("body") or "[system]")
    if kind == "order":
        items = len(_dicts(body.get("product_items")))
        note = f": {body['text']}" if body.get("text") else ""
        return f"[order: {items} item{'s' if items != 1 else ''}{note}]"
    if kind == "unsupported":
        inner = body.get("type")
        return f"[unsupported: {inner}]" if inner else "[unsupported]"
    return f"[{kind or 'unknown'}]"


# --- statuses ----------------------------------------------------------------------------


def _statuses(value: Mapping[str, Any], batch: ChangeBatch, parsed: ParsedWebhook) -> None:
    for raw in _dicts(value.get("statuses")):
        status = _STATUSES.get(str(raw.get("status")))
        if status is None or not raw.get("id"):
            parsed.ignored += 1  # e.g. "deleted", "warning"
            continue
        recipient = raw.get("recipient_id") or raw.get("recipient_user_id")
        batch.statuses.append(
            StatusUpdate(
                provider_message_id=str(raw["id"]),
                status=status,
                timestamp=_timestamp(raw.get("timestamp")),
                recipient=str(recipient) if recipient else None,
                error=_error(raw) if status == "failed" else None,
                pricing=parse_pricing(raw),
                channel_ref=batch.phone_number_id,
                raw=dict(raw),
            )
        )


def _error(raw: Mapping[str, Any]) -> ProviderError:
    errors = _dicts(raw.get("errors"))
    if not errors:
        return ProviderError(code="unknown", message="the provider reported a failure")
    first = errors[0]
    data = first.get("error_data") if isinstance(first.get("error_data"), Mapping) else {}
    details = {key: first[key] for key in ("href",) if first.get(key)}
    if data.get("details"):
        details["details"] = data["details"]
    return ProviderError(
        code=str(first.get("code", "unknown")),
        title=str(first.get("title") or ""),
        message=str(first.get("message") or data.get("details") or first.get("title") or ""),
        details=details,
    )


# --- small helpers -----------------------------------------------------------------------


def _timestamp(value: Any) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(int(value), dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return dt.datetime.now(dt.UTC)


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _get(raw: Mapping[str, Any], *keys: str) -> Any:
    current: Any = raw
    for key in keys:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
