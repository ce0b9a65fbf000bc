"""Provider identities: one active channel per provider account, platform-wide.

A channel plugin declares which provider account a channel's credentials address
(`ChannelAdapter.provider_identity`: Meta's phone_number_id, an Evolution server's
instance). `channels.provider_identity` is the one a channel holds, and a partial unique
index lets only one *active* channel per (type, identity) hold it, so no race can put
two companies on one number. The rule:

- a free identity is held by the channel created, re-configured or re-activated with it;
  deactivating (or deleting) the channel frees it;
- claiming an identity another active channel holds is refused with 409
  `provider_identity_claimed`, unless the claimant proves control of the account:
  `setup()` + `provision()` succeed with *its own* credentials (Meta: the token can read
  that phone number; Evolution: the server accepts the key for that instance). Then the
  identity moves: the former holder keeps its row, loses the identity and shows
  `provisioning_failed` with the reason, until it proves control again
  (`POST /api/v1/channels/{id}/provision`);
- routing by identity (`channels_by_identity`, for app-level webhooks such as Meta's
  one-app-many-numbers URL) reaches only the holder, and never while it is `new` or its
  provisioning failed. A channel's own URL (`/webhooks/<type>/<id>`) is not routing: the
  provider was pointed at that channel and authenticates with its secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic import BaseModel

from guiche.channel_host.runtime import LoadedChannel, load_channel_adapter
from guiche.database.engine import connection
from guiche.foundation.errors import Conflict
from guiche.foundation.pgtext import clean_text
from guiche.runtime.cache import runtime_cache
from guiche.specs import ChannelSpec

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.channels")

IDENTITY_INDEX = "channels_provider_identity_key"
PROVISIONING_FAILED = "provisioning_failed"
#: States in which a channel is never routed messages by identity.
UNROUTABLE_STATES = ("new", PROVISIONING_FAILED)
TAKEN_OVER = (
    "another channel proved control of this provider account (its provisioning "
    "succeeded) and now holds it; provision this channel again to claim it back"
)
_DIRECTORIES_KEY = "guiche.channel_host.claims.directories"


class IdentityClaimed(Conflict):
    code = "provider_identity_claimed"


def refused(detail: str) -> IdentityClaimed:
    """The 409 for a claim on another channel's identity that provisioning did not prove."""
    return IdentityClaimed(
        "This provider account is already connected to another channel; provisioning "
        "with these credentials did not prove control of it",
        details=[{"field": "credentials", "message": detail or "provisioning failed"}],
    )


def identity_of(spec: ChannelSpec, config: BaseModel) -> str | None:
    """The identity a channel type's plugin declares for these credentials, if any."""
    identity = spec.adapter.provider_identity(config)
    if identity is None:
        return None
    identity = clean_text(str(identity)).strip()
    return identity or None


def is_claim_conflict(exc: BaseException) -> bool:
    """Whether a write failed because another active channel holds the identity."""
    return (
        isinstance(exc, asyncpg.UniqueViolationError)
        and getattr(exc, "constraint_name", None) == IDENTITY_INDEX
    )


async def lock_identity(conn: Any, channel_type: str, identity: str) -> None:
    """Serialise the claims on one identity until the transaction ends. The unique index
    alone keeps one holder, but concurrent claims that also take over (update the holder,
    insert the claimant) would wait on each other's index entries and deadlock."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        f"guiche.channel_identity:{channel_type}:{identity}",
    )


async def held_by_other(conn: Any, channel_type: str, identity: str, channel_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM channels WHERE type = $1 AND provider_identity = $2"
            " AND is_active AND id <> $3)",
            channel_type,
            identity,
            channel_id,
        )
    )


@dataclass(frozen=True)
class Released:
    """A former holder that lost its identity to a proven claimant."""

    channel_id: uuid.UUID
    tenant_id: uuid.UUID


async def take_over(
    conn: Any, channel_type: str, identity: str, channel_id: uuid.UUID
) -> list[Released]:
    """In the caller's transaction, after `channel_id` proved control: every other active
    holder loses the identity (state `provisioning_failed`, `TAKEN_OVER`) and
    `channel_id` holds it. The caller publishes the losers' state and drops their cache."""
    await lock_identity(conn, channel_type, identity)
    rows = await conn.fetch(
        "UPDATE channels SET provider_identity = NULL, state = 'provisioning_failed',"
        " state_detail = $4, updated_at = now()"
        " WHERE type = $1 AND provider_identity = $2 AND is_active AND id <> $3"
        " RETURNING id, tenant",
        channel_type,
        identity,
        channel_id,
        TAKEN_OVER,
    )
    await conn.execute(
        "UPDATE channels SET provider_identity = $2, updated_at = now() WHERE id = $1",
        channel_id,
        identity,
    )
    for row in rows:
        log.warning(
            "provider identity taken over by a channel that proved control of it",
            extra={"channel": str(row["id"]), "claimant": str(channel_id), "type": channel_type},
        )
    return [Released(row["id"], row["tenant"]) for row in rows]


# --- routing by identity ------------------------------------------------------------


@dataclass
class _Directory:
    """identity → holder channel id for one channel type, per process."""

    ids: dict[str, uuid.UUID] = field(default_factory=dict)
    loaded_at: float = float("-inf")
    generation: int = -1
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _directory(services: Services, channel_type: str) -> _Directory:
    directories: dict[str, _Directory] = services.extras.setdefault(_DIRECTORIES_KEY, {})
    found = directories.get(channel_type)
    if found is None:
        found = directories[channel_type] = _Directory()
    return found


async def channels_by_identity(
    services: Services, channel_type: str, identities: set[str], *, ttl: float = 30.0
) -> dict[str, LoadedChannel]:
    """The routable holder of each identity that has one (active, plugin enabled,
    provisioned): what an app-level webhook delivers to.

    The identity map is kept per process and reloaded after `ttl` seconds, when an
    identity is unknown (a channel created a moment ago) and whenever any channel changed
    in any process (the runtime cache's invalidations: a failed provisioning, a take-over,
    a deactivation), so a channel that stops being routable is dropped at once.
    """
    directory = _directory(services, channel_type)
    cache = runtime_cache(services)
    stale = (
        time.monotonic() - directory.loaded_at >= ttl
        or directory.generation != cache.generation
        or not identities <= directory.ids.keys()
    )
    if stale:
        await _reload(services, channel_type, directory, since=directory.loaded_at)
    found: dict[str, LoadedChannel] = {}
    for identity in identities:
        channel_id = directory.ids.get(identity)
        if channel_id is None:
            continue
        loaded = await load_channel_adapter(services, channel_id, channel_type=channel_type)
        if loaded is not None:
            found[identity] = loaded
    return found


_HOLDERS = """
SELECT provider_identity, id FROM channels
WHERE type = $1 AND is_active AND provider_identity IS NOT NULL
  AND state <> ALL($2::varchar[])
"""

_UNCLAIMED = """
SELECT id FROM channels
WHERE type = $1 AND is_active AND provider_identity IS NULL AND state <> ALL($2::varchar[])
ORDER BY created_at, id
"""


async def _reload(
    services: Services, channel_type: str, directory: _Directory, *, since: float
) -> None:
    async with directory.lock:
        if directory.loaded_at > since:  # another request reloaded while this one waited
            return
        generation = runtime_cache(services).generation
        async with connection(services.db) as conn:
            await _claim_unclaimed(services, conn, channel_type)
            rows = await conn.fetch(_HOLDERS, channel_type, list(UNROUTABLE_STATES))
        directory.ids = {row["provider_identity"]: row["id"] for row in rows}
        directory.loaded_at = time.monotonic()
        directory.generation = generation


async def _claim_unclaimed(services: Services, conn: Any, channel_type: str) -> None:
    """Channels configured before identities were stored (their credentials are
    encrypted, so the migration could not) claim theirs here, oldest first; one whose
    identity another channel holds stays unrouted and is logged."""
    for row in await conn.fetch(_UNCLAIMED, channel_type, list(UNROUTABLE_STATES)):
        loaded = await load_channel_adapter(services, row["id"], channel_type=channel_type)
        if loaded is None:
            continue
        identity = identity_of(loaded.spec, loaded.adapter.config)
        if identity is None:
            continue
        try:
            await conn.execute(
                "UPDATE channels SET provider_identity = $2"
                " WHERE id = $1 AND provider_identity IS NULL",
                row["id"],
                identity,
            )
        except asyncpg.UniqueViolationError:
            log.warning(
                "channel's provider identity is held by another channel: not routed; "
                "provision it to prove control",
                extra={"channel": str(row["id"]), "type": channel_type},
            )
