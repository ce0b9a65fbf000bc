"""SQL on `baileys_sessions`: leases (who runs a session), the encrypted auth state, and
what the operator sees. A lease is a row's `owner` + `lease_until`: taken when free or
expired, renewed by its holder, so one session never runs in two bridges at once and a
dead bridge's sessions move once its leases run out. Writes from a bridge that lost the
lease (`owner` changed) are dropped."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from guiche_baileys_bridge.tables import BaileysSession

HALT = "halt"
"""The command of an ended session (logged out, banned, stopped by the sidecar): no
bridge starts it again until the operator asks for a new QR."""

COLUMNS = (
    "channel_id, tenant_id, owner, address, secret_encrypted, lease_until, state, detail, me, "
    "qr, qr_at, pairing_code, command, last_event_at"
)


async def acquire(
    channel_id: uuid.UUID,
    tenant_id: uuid.UUID,
    owner: str,
    address: str,
    secret_encrypted: str,
    seconds: float,
) -> bool:
    """Take (or keep) the lease on a channel's session; False while another holds it or
    the session has ended (`halt`: waits for the operator's connect)."""
    rows = await BaileysSession.raw(
        "INSERT INTO baileys_sessions (channel_id, tenant_id, owner, address, secret_encrypted,"
        " lease_until) VALUES ({}, {}, {}, {}, {}, now() + make_interval(secs => {}))"
        " ON CONFLICT (channel_id) DO UPDATE SET owner = excluded.owner,"
        " address = excluded.address, secret_encrypted = excluded.secret_encrypted,"
        " lease_until = excluded.lease_until"
        " WHERE baileys_sessions.command <> {} AND (baileys_sessions.owner = excluded.owner"
        " OR baileys_sessions.owner = '' OR baileys_sessions.lease_until IS NULL"
        " OR baileys_sessions.lease_until < now()) RETURNING channel_id",
        channel_id,
        tenant_id,
        owner,
        address,
        secret_encrypted,
        seconds,
        HALT,
    )
    return bool(rows)


async def renew(owner: str, channel_ids: list[uuid.UUID], seconds: float) -> set[uuid.UUID]:
    """Extend the holder's leases; returns the channels it still holds."""
    if not channel_ids:
        return set()
    rows = await BaileysSession.raw(
        "UPDATE baileys_sessions SET lease_until = now() + make_interval(secs => {})"
        " WHERE owner = {} AND channel_id = ANY({}::uuid[]) RETURNING channel_id",
        seconds,
        owner,
        [str(channel_id) for channel_id in channel_ids],
    )
    return {uuid.UUID(str(row["channel_id"])) for row in rows}


async def release(owner: str, channel_id: uuid.UUID) -> None:
    await BaileysSession.raw(
        "UPDATE baileys_sessions SET owner = '', address = '', lease_until = NULL"
        " WHERE channel_id = {} AND owner = {}",
        channel_id,
        owner,
    )


async def end(owner: str, channel_id: uuid.UUID, *, clear_auth: bool) -> None:
    """Mark the session ended and release its lease in one statement: were they two, a
    bridge's reconcile could take the just-released lease and start the session again
    before the `halt` is written."""
    await BaileysSession.raw(
        "UPDATE baileys_sessions SET command = {},"
        " auth_encrypted = CASE WHEN {} THEN '' ELSE auth_encrypted END,"
        " me = CASE WHEN {} THEN '' ELSE me END,"
        " owner = CASE WHEN owner = {} THEN '' ELSE owner END,"
        " address = CASE WHEN owner = {} THEN '' ELSE address END,"
        " lease_until = CASE WHEN owner = {} THEN NULL ELSE lease_until END"
        " WHERE channel_id = {}",
        HALT,
        clear_auth,
        clear_auth,
        owner,
        owner,
        owner,
        channel_id,
    )


async def load(channel_id: uuid.UUID) -> dict[str, Any] | None:
    rows = await BaileysSession.raw(
        f"SELECT {COLUMNS}, auth_encrypted FROM baileys_sessions WHERE channel_id = {{}}",
        channel_id,
    )
    return rows[0] if rows else None


async def save_auth(channel_id: uuid.UUID, owner: str, token: str) -> bool:
    rows = await BaileysSession.raw(
        "UPDATE baileys_sessions SET auth_encrypted = {} WHERE channel_id = {} AND owner = {}"
        " RETURNING channel_id",
        token,
        channel_id,
        owner,
    )
    return bool(rows)


async def clear_auth(channel_id: uuid.UUID) -> None:
    """After a logout the keys are worthless: the next start shows a new QR (and a
    pending logout request is done)."""
    await BaileysSession.raw(
        "UPDATE baileys_sessions SET auth_encrypted = '', me = '', command = ''"
        " WHERE channel_id = {}",
        channel_id,
    )


_FIELDS = frozenset({"state", "detail", "me", "qr", "qr_at", "pairing_code", "last_event_at"})


async def record(channel_id: uuid.UUID, **fields: Any) -> None:
    """What the operator sees (state, detail, me, QR, pairing code, last event time)."""
    unknown = set(fields) - _FIELDS
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    if not fields:
        return
    names = sorted(fields)
    sets = ", ".join(f"{name} = {{}}" for name in names)
    await BaileysSession.raw(
        f"UPDATE baileys_sessions SET {sets} WHERE channel_id = {{}}",
        *(fields[name] for name in names),
        channel_id,
    )


async def touch(channel_id: uuid.UUID, at: dt.datetime) -> None:
    await record(channel_id, last_event_at=at)


async def set_command(channel_id: uuid.UUID, tenant_id: uuid.UUID, command: str) -> None:
    """Ask the bridge running the session to act (`logout`, `pairing:<phone>`)."""
    await BaileysSession.raw(
        "INSERT INTO baileys_sessions (channel_id, tenant_id, command) VALUES ({}, {}, {})"
        " ON CONFLICT (channel_id) DO UPDATE SET command = excluded.command",
        channel_id,
        tenant_id,
        command,
    )


async def take_commands(owner: str) -> list[tuple[uuid.UUID, str]]:
    rows = await BaileysSession.raw(
        "UPDATE baileys_sessions s SET command = '' FROM (SELECT channel_id, command"
        " FROM baileys_sessions WHERE owner = {} AND command <> '' FOR UPDATE) c"
        " WHERE s.channel_id = c.channel_id RETURNING s.channel_id, c.command",
        owner,
    )
    return [(uuid.UUID(str(row["channel_id"])), str(row["command"])) for row in rows]
