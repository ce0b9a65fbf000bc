"""Panel JSON → typed records (pure functions, no I/O).

The panel is undocumented, so everything is read defensively: an item that does not fit
becomes `None` and is counted by the caller (`Odd`), never an exception that stops a
catalog. Dates are Mongo-style `{"$date": epoch ms}`; epoch seconds and ISO strings are
accepted too, and a date without an offset is read in the account's time zone.

Text goes to Postgres, which refuses NUL and lone surrogates and has column limits: they
are cleaned out (`guiche.plugin.clean_text`), labels (names, tags, funnel steps) are
cut to their column, and an id too long for its column makes its item odd (a cut id
would name another item).
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from guiche.channels import Chat, ChatKind, InboundMessage, Media, MessageType, Sender
from guiche.plugin import clean_text

_TYPES: dict[str, MessageType] = {
    "chat": MessageType.TEXT,
    "text": MessageType.TEXT,
    "image": MessageType.IMAGE,
    "ptt": MessageType.AUDIO,
    "audio": MessageType.AUDIO,
    "video": MessageType.VIDEO,
    "document": MessageType.DOCUMENT,
    "sticker": MessageType.STICKER,
}

#: Types that carry a file (a set built once: enum member lookups cost per message).
_MEDIA = frozenset(
    (
        MessageType.IMAGE,
        MessageType.AUDIO,
        MessageType.VIDEO,
        MessageType.DOCUMENT,
        MessageType.STICKER,
    )
)


@dataclass(frozen=True)
class ChatRecord:
    """One chat of the chat list, as the plugin's tables keep it."""

    id: str
    wa_chat_id: str
    name: str
    kind: ChatKind
    phone_id: str | None
    status: str | None
    archived: bool
    updated_at: dt.datetime | None
    last_message_at: dt.datetime | None
    tags: tuple[str, ...]
    funnel_steps: tuple[str, ...]
    agents: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def number(self) -> str:
        """The WhatsApp address without its suffix (digits for a person)."""
        return self.wa_chat_id.split("@", 1)[0]


@dataclass(frozen=True)
class Note:
    """An internal note of the panel (never a customer message)."""

    id: str
    author: str
    text: str
    at: dt.datetime


@dataclass
class Odd:
    """What did not fit, by reason, for logs and the job's counters."""

    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


def parse_date(value: Any, zone: zoneinfo.ZoneInfo | dt.tzinfo = dt.UTC) -> dt.datetime | None:
    """`{"$date": ms}`, epoch ms or s, or ISO text (naive ones read in `zone`); UTC out."""
    if isinstance(value, dict):
        value = value.get("$date")
        if isinstance(value, dict):  # {"$date": {"$numberLong": "..."}}
            value = value.get("$numberLong")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= 100_000_000_000 else value
        try:
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return parsed.astimezone(dt.UTC)
    return None


#: The longest id (chat, message, note, agent, phone) the plugin's tables hold.
ID_LENGTH = 64
#: The longest tag or funnel step kept (longer ones are cut).
LABEL_LENGTH = 120


def clean(value: str, limit: int | None = None) -> str:
    """`value` as Postgres can store it (`clean_text`), cut to `limit`."""
    value = clean_text(value)
    return value[:limit] if limit is not None else value


def _oid(value: Any) -> str | None:
    """An id (`{"$oid": ...}` or plain), or None when absent or too long to store."""
    if isinstance(value, dict):
        value = value.get("$oid")
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = clean(str(value)).strip()
        if text and len(text) <= ID_LENGTH:
            return text
    return None


def _texts(values: Any, key: str = "text") -> tuple[str, ...]:
    out: list[str] = []
    if isinstance(values, list):
        for value in values:
            if isinstance(value, dict):
                value = value.get(key) or value.get("name")
            if isinstance(value, str) and value.strip():
                out.append(clean(value.strip(), LABEL_LENGTH))
    return tuple(dict.fromkeys(out))


def parse_chat(item: Any, zone: dt.tzinfo = dt.UTC) -> ChatRecord | None:
    """A chat list entry, or None when it has no id or WhatsApp address."""
    if not isinstance(item, dict):
        return None
    chat_id = _oid(item.get("id")) or _oid(item.get("_id"))
    wa_chat_id = item.get("wa_chat_id")
    if not chat_id or not isinstance(wa_chat_id, str) or not wa_chat_id.strip():
        return None
    wa_chat_id = clean(wa_chat_id).strip()
    if len(wa_chat_id) > 120:
        return None
    kind = ChatKind.GROUP if wa_chat_id.endswith("@g.us") else ChatKind.DIRECT
    last = item.get("last_message")
    steps = item.get("funnel_steps", item.get("funnel_step"))
    if isinstance(steps, str | dict):
        steps = [steps]
    return ChatRecord(
        id=chat_id,
        wa_chat_id=wa_chat_id,
        name=clean(str(item.get("name") or ""), 200),
        kind=kind,
        phone_id=_oid(item.get("phone_id")),
        status=clean(str(item["status"]), 40) if item.get("status") else None,
        archived=item.get("archived") is True,
        updated_at=parse_date(item.get("updated"), zone),
        last_message_at=parse_date(last.get("date"), zone) if isinstance(last, dict) else None,
        tags=_texts(item.get("tags")),
        funnel_steps=_texts(steps),
        agents=_agents(item.get("users_delegated_ids")),
        raw=item,
    )


def _agents(values: Any) -> tuple[str, ...]:
    """The delegated agents' ids (an id too long to store is left out)."""
    if not isinstance(values, list):
        return ()
    return tuple(dict.fromkeys(a for a in map(_oid, values) if a is not None))


def parse_item(
    item: Any, chat: ChatRecord, zone: dt.tzinfo, odd: Odd
) -> InboundMessage | Note | None:
    """One `messages_and_notes` entry: a message, a note, or None (counted in `odd`)."""
    if not isinstance(item, dict):
        odd.add("not_an_object")
        return None
    if item.get("type") == "note" or ("n" in item and "m" not in item):
        return _note(item, zone, odd)
    m = item.get("m")
    if not isinstance(m, dict):
        odd.add("no_message_body")
        return None
    message_id = _oid(m.get("_id"))
    at = parse_date(m.get("timestamp"), zone) or parse_date(item.get("date"), zone)
    if not message_id or at is None:
        odd.add("no_id_or_date")
        return None
    try:
        return _message(m, message_id, at, chat, item)
    except ValueError:
        odd.add("invalid_message")
        return None


def _note(item: dict[str, Any], zone: dt.tzinfo, odd: Odd) -> Note | None:
    n = item.get("n")
    note_id = _oid(n.get("_id")) if isinstance(n, dict) else None
    at = parse_date(item.get("date"), zone)
    if not isinstance(n, dict) or not note_id or at is None:
        odd.add("invalid_note")
        return None
    return Note(
        note_id, clean(str(n.get("author") or ""), 200), clean(str(n.get("text") or "")), at
    )


@functools.lru_cache(maxsize=4096)
def chat_sender(chat: ChatRecord) -> tuple[Sender, Chat | None]:
    """Who the conversation is with: the person's phone, or the group chat. Cached: a
    chat's messages share one (frozen) sender instead of building it per message."""
    if chat.kind is ChatKind.GROUP:
        party = Sender(provider_user_id=chat.wa_chat_id, name=chat.name or None)
        return party, Chat(id=chat.wa_chat_id, kind=ChatKind.GROUP, title=chat.name or None)
    digits = "".join(ch for ch in chat.number if ch.isdigit())
    if digits:
        return Sender(phone=digits, name=chat.name or None), None
    return Sender(provider_user_id=chat.wa_chat_id, name=chat.name or None), None


def _message(
    m: dict[str, Any], message_id: str, at: dt.datetime, chat: ChatRecord, item: dict[str, Any]
) -> InboundMessage:
    sender, group = chat_sender(chat)
    kind = _TYPES.get(str(m.get("type") or "chat"), MessageType.UNSUPPORTED)
    text = m.get("text") if isinstance(m.get("text"), str) else None
    media = None
    file = m.get("file")
    if kind in _MEDIA:
        if not isinstance(file, dict):
            kind = MessageType.UNSUPPORTED
        else:
            folder = file.get("path_relative")
            folder = folder if isinstance(folder, str) else None
            name = file.get("name") if isinstance(file.get("name"), str) else None
            size = file.get("size")
            media = Media(
                url=f"{folder.rstrip('/')}/{name}" if folder and name else folder,
                mime_type=file.get("mime") if isinstance(file.get("mime"), str) else None,
                filename=name,
                size=size if isinstance(size, int) and size >= 0 else None,
                caption=text or None,
                voice=m.get("type") == "ptt",
            )
            text = None
    return InboundMessage(
        provider_message_id=message_id,
        sender=sender,
        timestamp=at,
        type=kind,
        text=text or None,
        media=media,
        from_me=m.get("is_out") is True,
        chat=group,
        raw=item,
    )
