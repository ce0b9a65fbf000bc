"""Bridge frames → Guichê's normalised types (pure functions, no I/O).

- `message` (a Baileys `WAMessage` in `data.message`): an `InboundMessage`; messages
  typed on the phone itself (`fromMe`) become outbound messages from the phone. Groups
  are dropped unless the channel accepts them; status stories, broadcast lists and
  newsletters always are. The decrypted bytes in `data.media` ride along inline.
- `ack`: a forward-only `StatusUpdate` of one of our messages.
- `connection` / `qr` / `pairing_code`: a `ConnectionUpdate` for the channel's state.

JIDs: a phone JID (`5511…@s.whatsapp.net`) gives the sender's phone (core normalises it
to E.164 with Brazil's ninth digit); an `@lid` JID keeps the lid as the provider user id
and takes the phone from `remoteJidAlt` / `senderPn` / `participantAlt` when Baileys
gives it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from guiche.channels import (
    Chat,
    ChatKind,
    ConnectionState,
    ConnectionUpdate,
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
    WebhookBatch,
)
from guiche_baileys_bridge.values import (
    as_bytes,
    as_int,
    as_timestamp,
    is_broadcast_jid,
    is_group_jid,
    is_lid_jid,
    is_phone_jid,
    jid_user,
    text_or_none,
)

log = logging.getLogger("guiche.plugin.baileys_bridge")

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
# --- messages.upsert --------------------------------------------------------------------


def _sender(key: dict[str, Any], data: dict[str, Any], from_me: bool) -> Sender | None:
    """The customer of the chat (also for `fromMe`: the chat is with them)."""
    remote = str(key.get("remoteJid") or "")
    # Our own pushName on fromMe messages, a participant's in groups: never the contact's.
    name = None if from_me or is_group_jid(remote) else text_or_none(data.get("pushName"))
    if is_group_jid(remote):
        return Sender(provider_user_id=remote)
    if is_phone_jid(remote):
        return Sender(phone=jid_user(remote), name=name)
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
        provider_media_id=key_id,
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


def parse_status(data: dict[str, Any], *, now: dt.datetime | None = None) -> StatusUpdate | None:
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
            code="whatsapp_error",
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


# --- bridge frames ----------------------------------------------------------------------

#: Close codes after which only the operator helps: a new QR (401), a banned or
#: blocked number (403), another WhatsApp Web client took the session (440).
NEEDS_QR = frozenset({401})
BANNED = frozenset({403})
REPLACED = frozenset({440})


def inbound_message(
    data: dict[str, Any], *, accept_groups: bool = False, now: dt.datetime | None = None
) -> InboundMessage | None:
    """A `message` frame's data, or None when it is not for us."""
    wa = data.get("message")
    if not isinstance(wa, dict):
        return None
    message = parse_message(wa, accept_groups=accept_groups, now=now)
    if message is None:
        return None
    media = data.get("media")
    if message.media is not None and isinstance(media, dict):
        encoded = text_or_none(media.get("base64"))
        message = message.model_copy(
            update={
                "media": message.media.model_copy(
                    update={
                        "data_base64": encoded,
                        "sha256": text_or_none(media.get("sha256")) or message.media.sha256,
                        "size": as_int(media.get("size")) or message.media.size,
                    }
                )
            }
        )
    remote = str((wa.get("key") or {}).get("remoteJid") or "")
    if is_group_jid(remote):
        author = _group_author(wa)
        if author is None:
            return None
        message = message.model_copy(
            update={"sender": author, "chat": Chat(id=remote, kind=ChatKind.GROUP)}
        )
    return message


def _group_author(wa: dict[str, Any]) -> Sender | None:
    key = wa.get("key") or {}
    name = None if key.get("fromMe") else text_or_none(wa.get("pushName"))
    participant = str(key.get("participant") or "")
    alt = str(key.get("participantAlt") or key.get("participantPn") or "")
    if is_phone_jid(participant):
        return Sender(phone=jid_user(participant), name=name)
    if is_lid_jid(participant):
        phone = jid_user(alt) if is_phone_jid(alt) else None
        return Sender(phone=phone, provider_user_id=participant, name=name)
    if key.get("fromMe"):
        return Sender(provider_user_id=str(key.get("remoteJid")))
    return None


def status_update(data: dict[str, Any], *, now: dt.datetime | None = None) -> StatusUpdate | None:
    """An `ack` frame's data (`key`, `status`, `status_code`, `timestamp`)."""
    item = {"key": data.get("key") or {}, "status": data.get("status_code", data.get("status"))}
    update = parse_status(item, now=as_timestamp(data.get("timestamp")) or now)
    if update is not None and update.error is not None:
        update = update.model_copy(
            update={"error": update.error.model_copy(update={"code": "whatsapp_error"})}
        )
    return update


def connection_update(
    data: dict[str, Any], *, now: dt.datetime | None = None
) -> ConnectionUpdate | None:
    """A `connection` frame's data: open, connecting, or close with Baileys' reason."""
    at = now or dt.datetime.now(dt.UTC)
    state = str(data.get("state") or "")
    if state == "open":
        me = data.get("me") if isinstance(data.get("me"), dict) else {}
        jid = text_or_none(me.get("id"))
        return ConnectionUpdate(
            state=ConnectionState.CONNECTED,
            detail=text_or_none(me.get("name")) or "",
            me=jid_user(jid) if jid else None,
            timestamp=at,
            raw=data,
        )
    last = data.get("last_disconnect") if isinstance(data.get("last_disconnect"), dict) else {}
    code = as_int(last.get("status_code"))
    reason = text_or_none(last.get("reason")) or "unknown"
    if state == "connecting":
        detail = f"reconnecting ({reason})" if last else ""
        return ConnectionUpdate(
            state=ConnectionState.CONNECTING, detail=detail, timestamp=at, raw=data
        )
    if state != "close":
        return None
    if code in NEEDS_QR:
        return ConnectionUpdate(
            state=ConnectionState.QR_REQUIRED,
            detail=f"logged out from the phone ({code}): scan a new QR code",
            timestamp=at,
            raw=data,
        )
    if code in BANNED:
        return ConnectionUpdate(
            state=ConnectionState.UNHEALTHY,
            detail=f"WhatsApp refused the number ({code} {reason}): it may be banned",
            timestamp=at,
            raw=data,
        )
    if code in REPLACED:
        return ConnectionUpdate(
            state=ConnectionState.DISCONNECTED,
            detail=f"another WhatsApp Web session replaced this one ({code})",
            timestamp=at,
            raw=data,
        )
    return ConnectionUpdate(
        state=ConnectionState.DISCONNECTED,
        detail=f"connection closed ({code or '-'} {reason}), reconnecting",
        timestamp=at,
        raw=data,
    )


def is_final_close(data: dict[str, Any]) -> bool:
    """A close after which the sidecar does not reconnect (the session ended)."""
    return str(data.get("state")) == "close" and data.get("will_reconnect") is False


def qr_update(data: dict[str, Any], *, now: dt.datetime | None = None) -> ConnectionUpdate:
    """A `qr` frame: the raw QR string (drawn by `GET .../qr.png` or the client)."""
    return ConnectionUpdate(
        state=ConnectionState.QR_REQUIRED,
        detail="scan the QR code with WhatsApp on the phone",
        qr_code=text_or_none(data.get("qr")),
        timestamp=now or dt.datetime.now(dt.UTC),
        raw={k: v for k, v in data.items() if k != "qr"},
    )


def frames_batch(frames: list[Any], *, accept_groups: bool = False) -> WebhookBatch:
    """Bridge frames (message, ack, connection, qr) as one batch; the rest is ignored."""
    messages, statuses, connection, ignored = [], [], [], 0
    for frame in frames:
        if (
            not isinstance(frame, dict)
            or frame.get("v") != 1
            or not isinstance(frame.get("data"), dict)
        ):
            ignored += 1
            continue
        kind, data = frame.get("type"), frame["data"]
        if kind == "message" and (m := inbound_message(data, accept_groups=accept_groups)):
            messages.append(m)
        elif kind == "ack" and (s := status_update(data)):
            statuses.append(s)
        elif kind == "connection" and (c := connection_update(data)):
            connection.append(c)
        elif kind == "qr":
            connection.append(qr_update(data))
        else:
            ignored += 1
    return WebhookBatch(
        messages=messages, statuses=statuses, connection=connection, ignored=ignored
    )
