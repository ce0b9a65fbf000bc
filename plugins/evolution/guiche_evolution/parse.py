"""Evolution webhook bodies → a normalised `WebhookBatch`.

Events are configured in UPPER_SNAKE (`MESSAGES_UPSERT`) but arrive as lowercase dotted
names (`messages.upsert`); both are accepted. What each becomes:

- `messages.upsert`: an `InboundMessage` (messages typed on the phone itself, `fromMe`,
  become outbound messages from the phone). Groups are dropped unless accepted; status
  stories, broadcast lists and channels always are.
- `messages.update`: a `StatusUpdate` keyed by `data.keyId` (WhatsApp's key id;
  `data.messageId` is Evolution's own database id). Only our own messages' statuses count.
- `send.message`: Evolution's echo of a message sent through its API (ours), parsed
  like a `fromMe` upsert. Usually it finds the provider id already recorded by the
  outbound worker and is a duplicate; when it beats the worker (Evolution posts it
  while answering the send call) core stores it and the worker merges it into our own
  message when it commits (`guiche.inbound.early_statuses`).
- `connection.update`, `qrcode.updated`: a `ConnectionUpdate`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from guiche.channels import (
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
from guiche_evolution.values import (
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

log = logging.getLogger("guiche.plugin.evolution")

MESSAGES_UPSERT = "messages.upsert"
MESSAGES_UPDATE = "messages.update"
SEND_MESSAGE = "send.message"
CONNECTION_UPDATE = "connection.update"
QRCODE_UPDATED = "qrcode.updated"

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
#: Baileys DisconnectReason codes after which only a new QR scan reconnects.
_NEEDS_QR = frozenset({401, 403})


def event_name(value: Any) -> str:
    """`MESSAGES_UPSERT`, `messages-upsert` and `messages.upsert` are one event."""
    return str(value or "").strip().lower().replace("_", ".").replace("-", ".")


@dataclass
class _Batch:
    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    connection: list[ConnectionUpdate] = field(default_factory=list)
    ignored: int = 0

    def build(self) -> WebhookBatch:
        return WebhookBatch(
            messages=self.messages,
            statuses=self.statuses,
            connection=self.connection,
            ignored=self.ignored,
        )


def _items(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return [item for item in data if isinstance(item, dict)]
    if isinstance(data, dict):
        if isinstance(data.get("messages"), list):  # a batched upsert
            return [item for item in data["messages"] if isinstance(item, dict)]
        return [data]
    return []


def parse_payload(
    payload: dict[str, Any], *, accept_groups: bool = False, now: dt.datetime | None = None
) -> WebhookBatch:
    """Normalise one webhook body. Unknown events and shapes are counted as ignored."""
    now = now or dt.datetime.now(dt.UTC)
    batch = _Batch()
    event = event_name(payload.get("event"))
    data = payload.get("data")
    if event in (MESSAGES_UPSERT, SEND_MESSAGE):
        for item in _items(data):
            if event == SEND_MESSAGE and isinstance(item.get("key"), dict):
                item = {**item, "key": {**item["key"], "fromMe": True}}  # always ours
            message = parse_message(item, accept_groups=accept_groups, now=now)
            if message is None:
                batch.ignored += 1
            else:
                batch.messages.append(message)
    elif event == MESSAGES_UPDATE:
        for item in _items(data):
            status = parse_status(item, now=now)
            if status is None:
                batch.ignored += 1
            else:
                batch.statuses.append(status)
    elif event == CONNECTION_UPDATE:
        update = parse_connection(data if isinstance(data, dict) else {}, now=now)
        if update is None:
            batch.ignored += 1
        else:
            batch.connection.append(update)
    elif event == QRCODE_UPDATED:
        batch.connection.append(parse_qrcode(data if isinstance(data, dict) else {}, now=now))
    else:  # events we never subscribe to
        batch.ignored += max(1, len(_items(data)))
    return batch.build()


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
            code="evolution_error",
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


# --- connection ---------------------------------------------------------------------------


def parse_connection(
    data: dict[str, Any], *, now: dt.datetime | None = None
) -> ConnectionUpdate | None:
    state = str(data.get("state") or data.get("status") or "").lower()
    reason = as_int(data.get("statusReason"))
    at = now or dt.datetime.now(dt.UTC)
    if state == "open":
        wuid = text_or_none(data.get("wuid"))
        return ConnectionUpdate(
            state=ConnectionState.CONNECTED,
            detail=text_or_none(data.get("profileName")) or "",
            me=jid_user(wuid) if wuid else None,
            timestamp=at,
            raw=data,
        )
    if state == "connecting":
        return ConnectionUpdate(state=ConnectionState.CONNECTING, timestamp=at, raw=data)
    if state == "close":
        if reason in _NEEDS_QR:
            return ConnectionUpdate(
                state=ConnectionState.QR_REQUIRED,
                detail=f"logged out from the phone ({reason}): scan a new QR code",
                timestamp=at,
                raw=data,
            )
        detail = f"connection closed ({reason})" if reason else "connection closed"
        return ConnectionUpdate(
            state=ConnectionState.DISCONNECTED, detail=detail, timestamp=at, raw=data
        )
    if state == "refused":  # the QR was shown too many times without a scan
        return ConnectionUpdate(
            state=ConnectionState.QR_REQUIRED,
            detail="QR code not scanned in time: request a new one",
            timestamp=at,
            raw=data,
        )
    return None


def strip_data_uri(value: str | None) -> str | None:
    """`data:image/png;base64,iVBOR...` → `iVBOR...` (plain base64 PNG)."""
    if not value:
        return None
    head, sep, tail = value.partition(",")
    return tail if sep and head.startswith("data:") else value


def qr_update(qrcode: dict[str, Any], *, now: dt.datetime | None = None) -> ConnectionUpdate:
    """A QR (or pairing code) to scan, from `qrcode.updated` or `/instance/connect`."""
    image = strip_data_uri(text_or_none(qrcode.get("base64")))
    pairing = text_or_none(qrcode.get("pairingCode"))
    code = text_or_none(qrcode.get("code"))
    raw = {k: v for k, v in qrcode.items() if k != "base64"}
    if image or pairing or code:
        return ConnectionUpdate(
            state=ConnectionState.QR_REQUIRED,
            detail="scan the QR code with WhatsApp on the phone",
            qr_code=image,
            pairing_code=pairing,
            timestamp=now,
            raw=raw,
        )
    message = text_or_none(qrcode.get("message"))
    return ConnectionUpdate(
        state=ConnectionState.QR_REQUIRED,
        detail=message or "waiting for a QR code",
        timestamp=now,
        raw=raw,
    )


def parse_qrcode(data: dict[str, Any], *, now: dt.datetime | None = None) -> ConnectionUpdate:
    qrcode = data.get("qrcode") if isinstance(data.get("qrcode"), dict) else data
    return qr_update(qrcode, now=now or dt.datetime.now(dt.UTC))
