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
from dataclasses import dataclass, field
from typing import Any

from guiche.channels import (
    ConnectionState,
    ConnectionUpdate,
    InboundMessage,
    StatusUpdate,
    WebhookBatch,
)
from guiche.plugin import whatsapp_web as wa_json

log = logging.getLogger("guiche.plugin.evolution")

MESSAGES_UPSERT = "messages.upsert"
MESSAGES_UPDATE = "messages.update"
SEND_MESSAGE = "send.message"
CONNECTION_UPDATE = "connection.update"
QRCODE_UPDATED = "qrcode.updated"

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
            message = wa_json.parse_message(item, accept_groups=accept_groups, now=now)
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


# --- connection ---------------------------------------------------------------------------


def parse_connection(
    data: dict[str, Any], *, now: dt.datetime | None = None
) -> ConnectionUpdate | None:
    state = str(data.get("state") or data.get("status") or "").lower()
    reason = wa_json.as_int(data.get("statusReason"))
    at = now or dt.datetime.now(dt.UTC)
    if state == "open":
        wuid = wa_json.text_or_none(data.get("wuid"))
        return ConnectionUpdate(
            state=ConnectionState.CONNECTED,
            detail=wa_json.text_or_none(data.get("profileName")) or "",
            me=wa_json.jid_user(wuid) if wuid else None,
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
    image = strip_data_uri(wa_json.text_or_none(qrcode.get("base64")))
    pairing = wa_json.text_or_none(qrcode.get("pairingCode"))
    code = wa_json.text_or_none(qrcode.get("code"))
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
    message = wa_json.text_or_none(qrcode.get("message"))
    return ConnectionUpdate(
        state=ConnectionState.QR_REQUIRED,
        detail=message or "waiting for a QR code",
        timestamp=now,
        raw=raw,
    )


def parse_qrcode(data: dict[str, Any], *, now: dt.datetime | None = None) -> ConnectionUpdate:
    qrcode = data.get("qrcode") if isinstance(data.get("qrcode"), dict) else data
    return qr_update(qrcode, now=now or dt.datetime.now(dt.UTC))


def parse_status(data: dict[str, Any], *, now: dt.datetime | None = None) -> StatusUpdate | None:
    """One `messages.update` item (core's reading, failures coded `evolution_error`)."""
    return wa_json.parse_status(data, now=now, error_code="evolution_error")
