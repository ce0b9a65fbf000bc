"""Baileys values read defensively, and WhatsApp JIDs.

The sidecar converts Longs to numbers and Buffers to BufferJSON, but a WAMessage still
carries whatever Baileys put there (numeric strings, index-keyed byte objects from older
serialisers), so every number and byte field is read in any of its shapes.
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
