"""The plugin's SQL: subscriptions (every query filters by tenant, except the delivery
worker's, which works for every company that enabled the plugin) and the delivery log."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson

from guiche.plugin import NotFound, log_position

SUBSCRIPTION_FIELDS = (
    "id, tenant, url, description, event_types, channel_ids, department_ids, active,"
    " cursor, failures, failing_since, next_attempt_at, last_error, paused_at,"
    " paused_reason, previous_secret_until, created_at, updated_at"
)


@asynccontextmanager
async def transaction(services: Any) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for one statement (autocommit: one round trip, where a
    transaction costs three); a transaction when the engine has no pool."""
    pool = getattr(services.db, "pool", None)
    if pool is not None:
        async with pool.acquire() as conn:
            yield conn
    else:
        async with services.db.transaction() as tx:
            yield tx.connection


async def create_subscription(
    services: Any, tenant_id: uuid.UUID, *, url: str, description: str, event_types: list[str],
    channel_ids: list[uuid.UUID], department_ids: list[uuid.UUID], active: bool,
    sealed_secret: str,
) -> dict[str, Any]:
    """New subscriptions start at the end of the company's log: they get what happens next."""
    cursor = await log_position(services, tenant_id)
    async with transaction(services) as conn:
        row = await conn.fetchrow(
            f"""INSERT INTO webhook_subscriptions
                (id, tenant, url, description, event_types, channel_ids, department_ids,
                 active, secret, cursor)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            RETURNING {SUBSCRIPTION_FIELDS}""",
            uuid.uuid4(), tenant_id, url, description, event_types, channel_ids,
            department_ids, active, sealed_secret, cursor,
        )
    return dict(row)


async def list_subscriptions(services: Any, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    async with transaction(services) as conn:
        rows = await conn.fetch(
            f"SELECT {SUBSCRIPTION_FIELDS} FROM webhook_subscriptions WHERE tenant = $1"
            " ORDER BY created_at DESC, id DESC",
            tenant_id,
        )
    return [dict(row) for row in rows]


async def get_subscription(
    services: Any, tenant_id: uuid.UUID, subscription_id: uuid.UUID
) -> dict[str, Any]:
    async with transaction(services) as conn:
        row = await conn.fetchrow(
            f"SELECT {SUBSCRIPTION_FIELDS} FROM webhook_subscriptions"
            " WHERE tenant = $1 AND id = $2",
            tenant_id, subscription_id,
        )
    if row is None:
        raise NotFound("No such webhook subscription.", details={"id": str(subscription_id)})
    return dict(row)


UPDATABLE = frozenset(
    {"url", "description", "event_types", "channel_ids", "department_ids", "active"}
)


async def update_subscription(
    services: Any, tenant_id: uuid.UUID, subscription_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """Apply `changes`; turning a paused subscription `active` again resumes it (its
    undelivered events go out from its cursor)."""
    sets = ["updated_at = now()"]
    args: list[Any] = [tenant_id, subscription_id]
    for name, value in changes.items():
        if name not in UPDATABLE:
            raise ValueError(name)
        args.append(value)
        sets.append(f"{name} = ${len(args)}")
    if changes.get("active") is True:
        sets += [
            "paused_at = NULL", "paused_reason = NULL", "failures = 0", "failing_since = NULL",
            "next_attempt_at = now()",
        ]
    async with transaction(services) as conn:
        row = await conn.fetchrow(
            f"UPDATE webhook_subscriptions SET {', '.join(sets)}"
            f" WHERE tenant = $1 AND id = $2 RETURNING {SUBSCRIPTION_FIELDS}",
            *args,
        )
    if row is None:
        raise NotFound("No such webhook subscription.", details={"id": str(subscription_id)})
    return dict(row)


async def rotate_secret(
    services: Any, tenant_id: uuid.UUID, subscription_id: uuid.UUID, sealed: str,
    overlap_until: dt.datetime,
) -> dict[str, Any]:
    async with transaction(services) as conn:
        row = await conn.fetchrow(
            f"""UPDATE webhook_subscriptions
                SET previous_secret = secret, previous_secret_until = $4, secret = $3,
                    updated_at = now()
                WHERE tenant = $1 AND id = $2 RETURNING {SUBSCRIPTION_FIELDS}""",
            tenant_id, subscription_id, sealed, overlap_until,
        )
    if row is None:
        raise NotFound("No such webhook subscription.", details={"id": str(subscription_id)})
    return dict(row)


async def delete_subscription(
    services: Any, tenant_id: uuid.UUID, subscription_id: uuid.UUID
) -> None:
    async with transaction(services) as conn:
        deleted = await conn.fetchval(
            "DELETE FROM webhook_subscriptions WHERE tenant = $1 AND id = $2 RETURNING id",
            tenant_id, subscription_id,
        )
    if deleted is None:
        raise NotFound("No such webhook subscription.", details={"id": str(subscription_id)})


async def set_cursor(
    services: Any, tenant_id: uuid.UUID, subscription_id: uuid.UUID, cursor: int
) -> dict[str, Any]:
    """Replay: deliver again everything after `cursor` (and retry at once)."""
    async with transaction(services) as conn:
        row = await conn.fetchrow(
            f"""UPDATE webhook_subscriptions SET cursor = $3, next_attempt_at = now(),
                    updated_at = now()
                WHERE tenant = $1 AND id = $2 RETURNING {SUBSCRIPTION_FIELDS}""",
            tenant_id, subscription_id, cursor,
        )
    if row is None:
        raise NotFound("No such webhook subscription.", details={"id": str(subscription_id)})
    return dict(row)


async def seq_before(services: Any, tenant_id: uuid.UUID, since: dt.datetime) -> int:
    """The cursor that replays the company's events recorded at or after `since`."""
    return await log_position(services, tenant_id, since=since)


# --- the delivery worker -------------------------------------------------------------

async def claim_due(
    services: Any, tenants: list[uuid.UUID], now: dt.datetime, lease_seconds: float, limit: int
) -> list[dict[str, Any]]:
    """Lease the due subscriptions of these companies: another worker skips a leased one
    until the lease ends (a killed worker's lease ends by itself: nothing is lost)."""
    token = uuid.uuid4()
    async with transaction(services) as conn:
        rows = await conn.fetch(
            """UPDATE webhook_subscriptions s
               SET lease_until = $2::timestamptz + make_interval(secs => $3), lease_token = $4
               WHERE s.id IN (
                   SELECT id FROM webhook_subscriptions
                   WHERE tenant = ANY($1::uuid[]) AND active AND paused_at IS NULL
                     AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2)
                   ORDER BY next_attempt_at LIMIT $5 FOR UPDATE SKIP LOCKED)
               RETURNING s.*""",
            tenants, now, lease_seconds, token, limit,
        )
    return [dict(row) for row in rows]


async def advance(
    services: Any, sub: dict[str, Any], cursor: int, now: dt.datetime, lease_seconds: float
) -> bool:
    """Move the cursor after a success and clear the failure state; False when the lease
    was lost (another worker owns the subscription now)."""
    async with transaction(services) as conn:
        done = await conn.fetchval(
            """UPDATE webhook_subscriptions SET cursor = greatest(cursor, $3), failures = 0,
                   failing_since = NULL, last_error = NULL,
                   lease_until = greatest($4::timestamptz, now()) + make_interval(secs => $5)
               WHERE id = $1 AND lease_token = $2 RETURNING id""",
            sub["id"], sub["lease_token"], cursor, now, lease_seconds,
        )
    return done is not None


async def record_failure(
    services: Any, sub: dict[str, Any], *, error: str, next_attempt_at: dt.datetime,
    pause_reason: str | None, now: dt.datetime,
) -> None:
    async with transaction(services) as conn:
        await conn.execute(
            """UPDATE webhook_subscriptions SET failures = failures + 1,
                   failing_since = coalesce(failing_since, $3), last_error = $4,
                   next_attempt_at = $5, lease_until = NULL, lease_token = NULL,
                   paused_at = CASE WHEN $6::text IS NULL THEN paused_at ELSE $3 END,
                   paused_reason = coalesce($6, paused_reason)
               WHERE id = $1 AND lease_token = $2""",
            sub["id"], sub["lease_token"], now, error[:500], next_attempt_at, pause_reason,
        )


async def release(services: Any, sub: dict[str, Any], next_attempt_at: dt.datetime) -> None:
    async with transaction(services) as conn:
        await conn.execute(
            """UPDATE webhook_subscriptions SET lease_until = NULL, lease_token = NULL,
                   next_attempt_at = greatest(next_attempt_at, $3)
               WHERE id = $1 AND lease_token = $2""",
            sub["id"], sub["lease_token"], next_attempt_at,
        )


async def skip_to(services: Any, sub: dict[str, Any], cursor: int) -> None:
    """Events past the cursor that this subscription does not want: move over them."""
    async with transaction(services) as conn:
        await conn.execute(
            "UPDATE webhook_subscriptions SET cursor = greatest(cursor, $3)"
            " WHERE id = $1 AND lease_token = $2",
            sub["id"], sub["lease_token"], cursor,
        )


async def delivered(
    services: Any, sub: dict[str, Any], *, cursor: int, now: dt.datetime,
    lease_seconds: float, attempts: list[dict[str, Any]],
) -> bool:
    """After 2xx answers: log them and move the cursor, in one statement. False when the
    lease was lost (another worker owns the subscription now; the log rows are kept).
    `attempts`: `seqs`, `status_code`, `latency_ms`, `response_body` each."""
    rows = [{"id": str(uuid.uuid4()), **attempt} for attempt in attempts]  # ids: the POSTs' own
    async with transaction(services) as conn:
        done = await conn.fetchval(
            """WITH logged AS (
                   INSERT INTO webhook_deliveries (id, tenant, subscription, created_at, kind,
                       seqs, succeeded, status_code, latency_ms, response_body)
                   SELECT r.id, $6, $1, $4, 'delivery', r.seqs, true, r.status_code,
                          r.latency_ms, r.response_body
                   FROM jsonb_to_recordset($7::jsonb) AS r(id uuid, seqs bigint[],
                       status_code int, latency_ms int, response_body text))
               UPDATE webhook_subscriptions SET cursor = greatest(cursor, $3), failures = 0,
                   failing_since = NULL, last_error = NULL,
                   lease_until = greatest($4::timestamptz, now()) + make_interval(secs => $5)
               WHERE id = $1 AND lease_token = $2 RETURNING id""",
            sub["id"], sub["lease_token"], cursor, now, lease_seconds, sub["tenant"],
            orjson.dumps(rows).decode(),
        )
    return done is not None


async def log_delivery(
    services: Any, sub: dict[str, Any], *, kind: str, seqs: list[int], succeeded: bool,
    status_code: int | None, latency_ms: int | None, error: str | None,
    response_body: str | None, at: dt.datetime, delivery_id: uuid.UUID | None = None,
) -> None:
    async with transaction(services) as conn:
        await conn.execute(
            """INSERT INTO webhook_deliveries (id, tenant, subscription, created_at, kind, seqs,
                   succeeded, status_code, latency_ms, error, response_body)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
            delivery_id or uuid.uuid4(), sub["tenant"], sub["id"], at, kind, seqs, succeeded,
            status_code,
            latency_ms, error, response_body,
        )


async def list_deliveries(
    services: Any, tenant_id: uuid.UUID, subscription_id: uuid.UUID, *, limit: int,
    before: tuple[dt.datetime, uuid.UUID] | None,
) -> list[dict[str, Any]]:
    async with transaction(services) as conn:
        rows = await conn.fetch(
            """SELECT id, created_at, kind, seqs, succeeded, status_code, latency_ms, error,
                      response_body
               FROM webhook_deliveries
               WHERE tenant = $1 AND subscription = $2
                 AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
               ORDER BY created_at DESC, id DESC LIMIT $5""",
            tenant_id, subscription_id, before[0] if before else None,
            before[1] if before else None, limit,
        )
    return [dict(row) for row in rows]


async def purge_deliveries(services: Any, tenant_id: uuid.UUID, older_than: dt.datetime) -> int:
    async with transaction(services) as conn:
        result = await conn.execute(
            "DELETE FROM webhook_deliveries WHERE tenant = $1 AND created_at < $2",
            tenant_id, older_than,
        )
    return int(result.split()[-1])


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


async def sealed_secrets(services: Any, sub_id: uuid.UUID) -> tuple[str, str | None, Any]:
    async with transaction(services) as conn:
        row = await conn.fetchrow(
            "SELECT secret, previous_secret, previous_secret_until FROM webhook_subscriptions"
            " WHERE id = $1",
            sub_id,
        )
    if row is None:
        raise NotFound("No such webhook subscription.")
    return row["secret"], row["previous_secret"], row["previous_secret_until"]
