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
from typing import Any

from guiche.channels import (
    Chat,
    ChatKind,
    ConnectionState,
    ConnectionUpdate,
    InboundMessage,
    Sender,
    StatusUpdate,
    WebhookBatch,
)
from guiche.plugin import whatsapp_web as wa_json

log = logging.getLogger("guiche.plugin.baileys_bridge")

# --- messages.upsert --------------------------------------------------------------------


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
    message = wa_json.parse_message(wa, accept_groups=accept_groups, now=now)
    if message is None:
        return None
    media = data.get("media")
    if message.media is not None and isinstance(media, dict):
        encoded = wa_json.text_or_none(media.get("base64"))
        message = message.model_copy(
            update={
                "media": message.media.model_copy(
                    update={
                        "data_base64": encoded,
                        "sha256": wa_json.text_or_none(media.get("sha256")) or message.media.sha256,
                        "size": wa_json.as_int(media.get("size")) or message.media.size,
                    }
                )
            }
        )
    remote = str((wa.get("key") or {}).get("remoteJid") or "")
    if wa_json.is_group_jid(remote):
        author = _group_author(wa)
        if author is None:
            return None
        message = message.model_copy(
            update={"sender": author, "chat": Chat(id=remote, kind=ChatKind.GROUP)}
        )
    return message


def _group_author(wa: dict[str, Any]) -> Sender | None:
    key = wa.get("key") or {}
    name = None if key.get("fromMe") else wa_json.text_or_none(wa.get("pushName"))
    participant = str(key.get("participant") or "")
    alt = str(key.get("participantAlt") or key.get("participantPn") or "")
    if wa_json.is_phone_jid(participant):
        return Sender(phone=wa_json.jid_user(participant), name=name)
    if wa_json.is_lid_jid(participant):
        phone = wa_json.jid_user(alt) if wa_json.is_phone_jid(alt) else None
        return Sender(phone=phone, provider_user_id=participant, name=name)
    if key.get("fromMe"):
        return Sender(provider_user_id=str(key.get("remoteJid")))
    return None


def status_update(data: dict[str, Any], *, now: dt.datetime | None = None) -> StatusUpdate | None:
    """An `ack` frame's data (`key`, `status`, `status_code`, `timestamp`)."""
    item = {"key": data.get("key") or {}, "status": data.get("status_code", data.get("status"))}
    update = wa_json.parse_status(item, now=wa_json.as_timestamp(data.get("timestamp")) or now)
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
        jid = wa_json.text_or_none(me.get("id"))
        return ConnectionUpdate(
            state=ConnectionState.CONNECTED,
            detail=wa_json.text_or_none(me.get("name")) or "",
            me=wa_json.jid_user(jid) if jid else None,
            timestamp=at,
            raw=data,
        )
    last = data.get("last_disconnect") if isinstance(data.get("last_disconnect"), dict) else {}
    code = wa_json.as_int(last.get("status_code"))
    reason = wa_json.text_or_none(last.get("reason")) or "unknown"
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
        qr_code=wa_json.text_or_none(data.get("qr")),
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
