"""WhatsApp Web messages as Baileys shapes them, read into Guichê's normalised types.

Several ways to reach WhatsApp speak Baileys' JSON: Evolution API posts its `WAMessage`s
in webhooks, and the `baileys_bridge` sidecar forwards them as they are. One reading of
that shape serves them all (and any third-party channel built on Baileys or a server
that wraps it): `parse_message` (a `WAMessage` → `InboundMessage`), `parse_status` (a
message update → `StatusUpdate`), `parse_vcard`, and the defensive readers below, since
one field arrives in several shapes depending on the version and the serialiser:
numbers as JSON numbers, numeric strings or long.js `{low, high, unsigned}` objects
(with a possibly negative `low`), bytes as base64 or index-keyed objects.

JIDs: a phone JID (`5511…@s.whatsapp.net`) gives the sender's phone (core normalises it
to E.164 with Brazil's ninth digit); an `@lid` JID keeps the lid as the provider user id
and takes the phone from `remoteJidAlt` / `senderPn` / `participantAlt` when present.
Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import re
from typing import Any

from guiche.channels import (
    DeliveryStatus,
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

log = logging.getLogger("guiche.whatsapp_web")

_TWO_32 = 1 << 32
_MILLIS_THRESHOLD = 10**11  # epoch seconds stay below this until the year 5138


def as_int(value: Any) -> int | None:
    """An integer from a number, a numeric string or a long.js object; else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return int(float(text))
            except ValueError:
                return None
    if isinstance(value, dict) and "low" in value and "high" in value:
        low, high = as_int(value.get("low")), as_int(value.get("high"))
        if low is None or high is None:
            return None
        # long.js keeps two signed 32-bit halves; the low half is always read unsigned.
        if value.get("unsigned"):
            high %= _TWO_32
        return high * _TWO_32 + (low % _TWO_32)
    return None


def as_bytes(value: Any) -> bytes | None:
    """Bytes from base64 text, an index-keyed object (`{"0": 36, ...}`), a list of
    ints or a Node Buffer's JSON form; else None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
    if isinstance(value, dict):
        if value.get("type") == "Buffer" and "data" in value:
            return as_bytes(value["data"])
        try:
            items = sorted((int(key), int(item)) for key, item in value.items())
            return bytes(item for _, item in items)
        except (TypeError, ValueError):
            return None
    if isinstance(value, list):
        try:
            return bytes(int(item) for item in value)
        except (TypeError, ValueError):
            return None
    return None


def as_timestamp(value: Any) -> dt.datetime | None:
    """An aware UTC datetime from epoch seconds (or milliseconds) in any number shape."""
    number = as_int(value)
    if number is None or number <= 0:
        return None
    if number > _MILLIS_THRESHOLD:
        number //= 1000
    try:
        return dt.datetime.fromtimestamp(number, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def text_or_none(value: Any) -> str | None:
    """A non-empty stripped string, else None."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


# --- JIDs ------------------------------------------------------------------------------

PHONE_SERVERS = ("s.whatsapp.net", "c.us")


def jid_server(jid: str) -> str:
    return jid.rpartition("@")[2] if "@" in jid else ""


def jid_user(jid: str) -> str:
    """The user part of a JID without its device suffix (`5511...:12@s.whatsapp.net`)."""
    return jid.partition("@")[0].partition(":")[0]


def is_phone_jid(jid: str | None) -> bool:
    if not jid:
        return False
    return jid_server(jid) in PHONE_SERVERS and jid_user(jid).isdigit()


def is_group_jid(jid: str) -> bool:
    return jid_server(jid) == "g.us"


def is_lid_jid(jid: str) -> bool:
    return jid_server(jid) == "lid"


def is_broadcast_jid(jid: str) -> bool:
    """Status stories, broadcast lists and channels: never a customer conversation."""
    return jid_server(jid) in ("broadcast", "newsletter")


# --- WAMessage shapes ----------------------------------------------------------------

#: Content wrapped one level down (disappearing, view-once, captioned documents).
_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
)
#: Keys beside the content that are never the content itself.
_NOT_CONTENT = frozenset(
    {"messageContextInfo", "base64", "mediaUrl", "contextInfo", "senderKeyDistributionMessage"}
)
#: Protocol traffic (revokes, edits, key distribution, poll votes): nothing to show.
_SILENT = frozenset(
    {"protocolMessage", "senderKeyDistributionMessage", "pollUpdateMessage", "editedMessage"}
)
_MEDIA_TYPES = {
    "imageMessage": MessageType.IMAGE,
    "videoMessage": MessageType.VIDEO,
    "ptvMessage": MessageType.VIDEO,
    "audioMessage": MessageType.AUDIO,
    "documentMessage": MessageType.DOCUMENT,
    "stickerMessage": MessageType.STICKER,
}
_DEFAULT_MIME = {
    MessageType.IMAGE: "image/jpeg",
    MessageType.VIDEO: "video/mp4",
    MessageType.AUDIO: "audio/ogg",
    MessageType.DOCUMENT: "application/octet-stream",
    MessageType.STICKER: "image/webp",
}
#: Evolution's status names (src/utils/renderStatus.ts) and Baileys' numeric codes.
_STATUSES: dict[str, DeliveryStatus] = {
    "SERVER_ACK": DeliveryStatus.SENT,
    "DELIVERY_ACK": DeliveryStatus.DELIVERED,
    "READ": DeliveryStatus.READ,
    "PLAYED": DeliveryStatus.READ,
    "ERROR": DeliveryStatus.FAILED,
}
_STATUS_CODES = {
    0: "ERROR",
    1: "PENDING",
    2: "SERVER_ACK",
    3: "DELIVERY_ACK",
    4: "READ",
    5: "PLAYED",
}


def _sender(key: dict[str, Any], data: dict[str, Any], from_me: bool) -> Sender | None:
    """The customer of the chat (also for `fromMe`: the chat is with them)."""
    remote = str(key.get("remoteJid") or "")
    # Our own pushName on fromMe messages, a participant's in groups: never the contact's.
    name = None if from_me or is_group_jid(remote) else text_or_none(data.get("pushName"))
    if is_group_jid(remote):
        return Sender(provider_user_id=remote)
    if is_phone_jid(remote):
        return Sender(phone=jid_user(remote), name=name)
    if remote.isdigit():  # EVOLUTION-integration echoes carry the bare number
        return Sender(phone=remote, name=name)
    if is_lid_jid(remote):
        alt = next(
            (
                str(key[field_name])
                for field_name in ("remoteJidAlt", "senderPn", "participantAlt")
                if is_phone_jid(key.get(field_name))
            ),
            None,
        )
        return Sender(phone=jid_user(alt) if alt else None, provider_user_id=remote, name=name)
    if remote:
        return Sender(provider_user_id=remote, name=name)
    return None


def _unwrap(message: dict[str, Any], hint: str | None) -> tuple[str | None, dict[str, Any]]:
    """(content type, content) — following wrappers and skipping metadata keys."""
    for _ in range(4):
        kinds = [k for k in message if k not in _NOT_CONTENT and message[k] is not None]
        if not kinds:
            return None, {}
        kind = hint if hint in kinds else kinds[0]
        hint = None
        if kind in _WRAPPERS and isinstance(message[kind], dict):
            inner = message[kind].get("message")
            if isinstance(inner, dict):
                message = inner
                continue
        content = message[kind]
        return kind, content if isinstance(content, dict) else {"text": content}
    return None, {}


def _quoted_id(data: dict[str, Any], content: dict[str, Any]) -> str | None:
    for context in (data.get("contextInfo"), content.get("contextInfo")):
        if isinstance(context, dict):
            stanza = text_or_none(context.get("stanzaId"))
            if stanza:
                return stanza
    return None


def _media(kind: str, content: dict[str, Any], message: dict[str, Any], key_id: str) -> Media:
    mtype = _MEDIA_TYPES[kind]
    sha = as_bytes(content.get("fileSha256"))
    encoded = message.get("base64")
    filename = text_or_none(content.get("fileName"))
    if filename is None and mtype is MessageType.DOCUMENT:
        filename = text_or_none(content.get("title"))
    return Media(
        provider_media_id=key_id,  # what /chat/getBase64FromMediaMessage looks up
        url=text_or_none(message.get("mediaUrl")),  # Evolution's own S3 copy, when enabled
        mime_type=text_or_none(content.get("mimetype")) or _DEFAULT_MIME[mtype],
        filename=filename,
        caption=text_or_none(content.get("caption")),
        sha256=sha.hex() if sha and len(sha) == 32 else None,
        size=as_int(content.get("fileLength")),
        voice=bool(content.get("ptt")),
        animated=bool(content.get("isAnimated") or content.get("gifPlayback")),
        data_base64=encoded.strip() if isinstance(encoded, str) and encoded.strip() else None,
    )


_VCARD_LINE = re.compile(r"^(?:item\d+\.)?(?P<name>[A-Z-]+)(?P<params>;[^:]*)?:(?P<value>.*)$")


def parse_vcard(vcard: str, display_name: str | None = None) -> SharedContact:
    """The bits of a vCard an agent needs: name, phones (WhatsApp ids first), e-mails."""
    name, phones, emails, organization = display_name, [], [], None
    for line in vcard.replace("\r\n", "\n").split("\n"):
        match = _VCARD_LINE.match(line.strip())
        if not match:
            continue
        field_name, params, value = match["name"], match["params"] or "", match["value"].strip()
        if field_name == "FN" and value and not name:
            name = value
        elif field_name == "TEL":
            waid = re.search(r"waid=(\d+)", params)
            phone = f"+{waid.group(1)}" if waid else value
            if phone and phone not in phones:
                phones.append(phone)
        elif field_name == "EMAIL" and value:
            emails.append(value)
        elif field_name == "ORG" and value:
            organization = value.strip(";") or None
    return SharedContact(
        name=name or (phones[0] if phones else "Contact"),
        phones=phones,
        emails=emails,
        organization=organization,
        raw={"vcard": vcard},
    )


def _contacts(kind: str, content: dict[str, Any]) -> list[SharedContact]:
    cards = content.get("contacts") if kind == "contactsArrayMessage" else [content]
    shared = []
    for card in cards or []:
        if isinstance(card, dict) and isinstance(card.get("vcard"), str):
            shared.append(parse_vcard(card["vcard"], text_or_none(card.get("displayName"))))
    return shared


def _interactive(kind: str, content: dict[str, Any]) -> InteractiveReply | None:
    if kind == "buttonsResponseMessage":
        title = text_or_none(content.get("selectedDisplayText")) or ""
        return InteractiveReply(
            kind="button_reply", id=text_or_none(content.get("selectedButtonId")), title=title
        )
    if kind == "listResponseMessage":
        reply = content.get("singleSelectReply") or {}
        return InteractiveReply(
            kind="list_reply",
            id=text_or_none(reply.get("selectedRowId")),
            title=text_or_none(content.get("title")) or "",
            description=text_or_none(content.get("description")),
        )
    if kind == "templateButtonReplyMessage":
        return InteractiveReply(
            kind="quick_reply",
            id=text_or_none(content.get("selectedId")),
            title=text_or_none(content.get("selectedDisplayText")) or "",
        )
    return None


def _raw(data: dict[str, Any]) -> dict[str, Any]:
    """The provider payload to keep, without the inline media bytes (kept once, normalised)."""
    message = data.get("message")
    if isinstance(message, dict) and "base64" in message:
        return {**data, "message": {k: v for k, v in message.items() if k != "base64"}}
    return data


def parse_message(
    data: dict[str, Any], *, accept_groups: bool = False, now: dt.datetime | None = None
) -> InboundMessage | None:
    """One `messages.upsert` item, or None when it is not for us (groups, broadcasts,
    protocol traffic, malformed)."""
    key = data.get("key")
    if not isinstance(key, dict):
        return None
    remote, key_id = str(key.get("remoteJid") or ""), text_or_none(key.get("id"))
    if not remote or not key_id or is_broadcast_jid(remote):
        return None
    if is_group_jid(remote) and not accept_groups:
        return None
    from_me = bool(key.get("fromMe"))
    sender = _sender(key, data, from_me)
    if sender is None:
        return None
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    kind, content = _unwrap(message, text_or_none(data.get("messageType")))
    if kind in _SILENT:
        return None
    fields: dict[str, Any] = {}
    if kind == "conversation":
        mtype, fields["text"] = MessageType.TEXT, text_or_none(content.get("text")) or ""
    elif kind == "extendedTextMessage":
        mtype, fields["text"] = MessageType.TEXT, text_or_none(content.get("text")) or ""
    elif kind in _MEDIA_TYPES:
        mtype, fields["media"] = _MEDIA_TYPES[kind], _media(kind, content, message, key_id)
    elif kind in ("locationMessage", "liveLocationMessage"):
        lat, lon = content.get("degreesLatitude"), content.get("degreesLongitude")
        if not isinstance(lat, int | float) or not isinstance(lon, int | float):
            mtype = MessageType.UNSUPPORTED
        else:
            mtype = MessageType.LOCATION
            fields["location"] = Location(
                latitude=float(lat),
                longitude=float(lon),
                name=text_or_none(content.get("name")),
                address=text_or_none(content.get("address")),
                url=text_or_none(content.get("url")),
            )
    elif kind in ("contactMessage", "contactsArrayMessage"):
        mtype, fields["contacts"] = MessageType.CONTACTS, _contacts(kind, content)
    elif kind == "reactionMessage":
        target = content.get("key") if isinstance(content.get("key"), dict) else {}
        target_id = text_or_none(target.get("id"))
        if not target_id:
            return None
        mtype = MessageType.REACTION
        emoji = content.get("text") if isinstance(content.get("text"), str) else ""
        fields["reaction"] = Reaction(target_provider_message_id=target_id, emoji=emoji)
    elif (interactive := _interactive(kind or "", content)) is not None:
        mtype, fields["interactive"] = MessageType.INTERACTIVE, interactive
    else:
        mtype = MessageType.UNSUPPORTED
    at = as_timestamp(data.get("messageTimestamp")) or now or dt.datetime.now(dt.UTC)
    return InboundMessage(
        provider_message_id=key_id,
        sender=sender,
        timestamp=at,
        type=mtype,
        reply_to_provider_message_id=_quoted_id(data, content),
        from_me=from_me,
        raw=_raw(data),
        **fields,
    )


# --- messages.update --------------------------------------------------------------------


def parse_status(
    data: dict[str, Any],
    *,
    now: dt.datetime | None = None,
    error_code: str = "whatsapp_error",
) -> StatusUpdate | None:
    """One `messages.update` item: only statuses of our own messages that move them."""
    key = data.get("key") if isinstance(data.get("key"), dict) else {}
    from_me = data.get("fromMe", key.get("fromMe"))
    if from_me is False:  # our read receipts of the customer's messages
        return None
    key_id = text_or_none(data.get("keyId")) or text_or_none(key.get("id"))
    raw_status = data.get("status")
    if raw_status is None and isinstance(data.get("update"), dict):
        raw_status = data["update"].get("status")
    code = as_int(raw_status) if not isinstance(raw_status, str) else None
    name = _STATUS_CODES.get(code, "") if code is not None else str(raw_status or "").upper()
    status = _STATUSES.get(name)
    if not key_id or status is None:
        return None
    error = None
    if status is DeliveryStatus.FAILED:
        error = ProviderError(
            code=error_code,
            title="WhatsApp reported an error",
            message="WhatsApp could not deliver this message",
        )
    recipient = text_or_none(data.get("remoteJid")) or text_or_none(key.get("remoteJid"))
    return StatusUpdate(
        provider_message_id=key_id,
        status=status,
        timestamp=now or dt.datetime.now(dt.UTC),
        recipient=recipient,
        error=error,
        raw=data,
    )
