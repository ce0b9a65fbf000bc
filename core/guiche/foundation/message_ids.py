"""Message ids that carry their message's time, so a lookup by id alone can name its chunk.

`messages` is partitioned by `created_at` (a TimescaleDB hypertable where available), and
its key is `(id, created_at)`. A lookup by id alone (an attachment's URL, a reply target
named by the client) would probe every chunk's index, and decompress every compressed
chunk it cannot exclude. So new ids are UUIDv7 whose 48-bit millisecond timestamp is the
message's own `created_at` (its provider time for inbound and imported messages, not the
moment of the insert): `time_window(id)` gives the millisecond that holds `created_at`,
and the query adds `created_at >= lo AND created_at < hi`, which TimescaleDB prunes to one
chunk and plain PostgreSQL answers from the same primary-key probe.

Ids made before this (UUIDv4) carry no time: `time_window` returns None and the lookup
stays by id alone. SQL makes ids with `guiche_message_id(timestamptz)` (same layout).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import uuid
from collections.abc import Sequence

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
_MAX_MS = 1 << 48
_VARIANT = "89ab"  # the hex digit that starts the RFC 4122 variant's bits (10xx)

#: Creates `guiche_message_id(at)`: a UUIDv7 whose timestamp is `at`'s millisecond (a
#: random UUIDv4 for a time outside the 48-bit range, which then carries no time).
SQL_FUNCTION = """
CREATE OR REPLACE FUNCTION guiche_message_id(at timestamptz) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $fn$
SELECT CASE WHEN ms >= 0 AND ms < 281474976710656 THEN
    encode(set_bit(set_bit(
        overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send(ms) FROM 3) FROM 1 FOR 6),
        52, 1), 53, 1), 'hex')::uuid
  ELSE gen_random_uuid() END
FROM (SELECT floor(extract(epoch FROM at) * 1000)::bigint AS ms) t
$fn$;
"""


def new_message_id(at: dt.datetime) -> uuid.UUID:
    """A UUIDv7 carrying `at` (aware) to the millisecond; the caller stores `at` as created_at."""
    ms = (at - _EPOCH) // _MS
    if not 0 <= ms < _MAX_MS:
        return uuid.uuid4()
    value = (ms << 80) | int.from_bytes(secrets.token_bytes(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


def new_message_id_texts(times: Sequence[dt.datetime]) -> list[str]:
    """`new_message_id` for many times at once, as 32-digit hex text (what Postgres reads
    for a uuid): the bulk import makes thousands per batch, and building `uuid.UUID`
    objects one by one (plus a random read each) cost more than the rest of the claim."""
    noise = os.urandom(10 * len(times)).hex()
    out: list[str] = []
    for i, at in enumerate(times):
        ms = (at - _EPOCH) // _MS
        if not 0 <= ms < _MAX_MS:
            out.append(uuid.uuid4().hex)
            continue
        r = noise[20 * i : 20 * i + 20]
        # 48-bit time, version 7, 12 random bits, the RFC 4122 variant, 62 random bits
        out.append(f"{ms:012x}7{r[:3]}{_VARIANT[int(r[3], 16) & 3]}{r[4:19]}")
    return out


def time_window(message_id: uuid.UUID) -> tuple[dt.datetime, dt.datetime] | None:
    """`[lo, hi)` holding the created_at of a message with this id, or None (an older id)."""
    if message_id.version != 7:
        return None
    lo = _EPOCH + (message_id.int >> 80) * _MS
    return lo, lo + _MS


def created_at_filter(
    message_id: uuid.UUID, column: str = "created_at"
) -> tuple[str, tuple[dt.datetime, ...]]:
    """The ` AND <column> in the id's millisecond` condition (Piccolo `{}` placeholders) and
    its values, to append to a lookup by id; empty for an id that carries no time."""
    window = time_window(message_id)
    if window is None:
        return "", ()
    return f" AND {column} >= {{}} AND {column} < {{}}", window
