"""`X-Guiche-Signature: t=<unix>,v1=<hex>`: HMAC-SHA256 of `"<t>.<body>"` with the
subscription's secret. During a rotation's overlap the header carries one `v1=` per
live secret (newest first), so a receiver holding either verifies.

Receivers verify with `verify()` (the README shows the same code to copy): recompute
over the raw body, compare in constant time, and refuse a `t` too far from now
(replays).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Sequence

HEADER = "X-Guiche-Signature"
TOLERANCE_SECONDS = 300


@functools.lru_cache(maxsize=256)
def _keyed(secret: str) -> hmac.HMAC:
    """The HMAC state after the key, copied per message (the key setup, once per secret)."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = _keyed(secret).copy()
    mac.update(b"%d." % timestamp)
    mac.update(body)
    return mac.hexdigest()


def header_value(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}" for s in secrets)])


def verify(
    secret: str, header: str, body: bytes, *, tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """The receiver's check (the README's snippet): True if one `v1` matches and `t` is
    within `tolerance` seconds of now."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for key, value in fields if key.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(
        hmac.compare_digest(expected, value.strip()) for key, value in fields if key.strip() == "v1"
    )
