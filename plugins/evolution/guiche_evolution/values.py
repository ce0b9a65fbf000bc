"""Evolution's loosely typed values, read defensively.

Evolution serialises raw Baileys objects, so one field arrives in several shapes
depending on the version and the serialiser: numbers as JSON numbers, numeric strings
or long.js `{low, high, unsigned}` objects (with a possibly negative `low`), bytes as
base64 or index-keyed objects, and error messages as strings, lists or nested lists.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

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


# --- error messages --------------------------------------------------------------------


def flatten_message(value: Any) -> str:
    """Evolution's `response.message` (a string, a list of strings, a list of objects or
    a nested list) as one readable line."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple):
        parts = [flatten_message(item) for item in value]
        return "; ".join(part for part in parts if part)
    if isinstance(value, dict):
        if value.get("exists") is False:
            who = value.get("number") or jid_user(str(value.get("jid") or "")) or "the number"
            return f"{who} is not on WhatsApp"
        if "message" in value:
            return flatten_message(value["message"])
        return ", ".join(f"{key}: {flatten_message(item)}" for key, item in value.items())
    return str(value)


def error_reason(body: Any) -> str:
    """The human reason in an Evolution error body (`{status, error, response: {message}}`)."""
    if isinstance(body, dict):
        response = body.get("response")
        if isinstance(response, dict) and "message" in response:
            reason = flatten_message(response["message"])
            if reason:
                return reason
        for key in ("message", "error"):
            reason = flatten_message(body.get(key))
            if reason:
                return reason
        return ""
    return flatten_message(body)


def not_on_whatsapp(body: Any) -> bool:
    """True when a 400 says the number has no WhatsApp account."""
    if not isinstance(body, dict):
        return False
    response = body.get("response")
    messages = response.get("message") if isinstance(response, dict) else None
    stack = [messages]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict) and item.get("exists") is False:
            return True
    return False
