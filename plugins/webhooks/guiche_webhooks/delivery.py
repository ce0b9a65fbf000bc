"""Delivery from the event log: one cursor per subscription, in order, at least once.

A pass (`deliver_due`, the `webhooks.deliver` task every second, and at once when a
company's events arrive) leases every due subscription, reads the company's events after
its cursor — only up to the settled horizon (`guiche.plugin.settled_seq`), so an event
committed late is never skipped — and POSTs them in order, up to `max_batch` per
request (a receiver that lags gets batches; one that keeps up gets single events). The
cursor moves only after a 2xx, so a crash between the POST and the move delivers the
batch again (receivers dedupe on the event `id`). One batch is in flight per
subscription, which keeps every conversation's events (indeed all of them) in order.

Failures open the subscription's circuit: no request until `next_attempt_at`
(exponential backoff with jitter, or the receiver's `Retry-After`), then one probe.
Each subscription runs in its own task with its own timeout, so a dead endpoint delays
only itself. Failing for longer than `retry_hours` pauses it (a `webhook.paused`
event tells the company's admins why); its events wait at the cursor, nothing dropped,
until an admin sets it `active` again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import functools
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from guiche.plugin import (
    LoggedEvent,
    decrypt_json,
    enabled_contexts,
    publish_event,
    read_events,
    settled_seq,
)
from guiche_webhooks import metrics, signing, store
from guiche_webhooks.config import WebhooksSettings
from guiche_webhooks.netguard import TargetRefused, check_url, delivery_client, refusal_of

log = logging.getLogger("guiche.plugin.webhooks")

BASE_DELAY = 5.0
MAX_DELAY = 3600.0
MAX_RETRY_AFTER = 6 * 3600.0
BODY_KEEP = 1000
LEASE_SECONDS = 120.0
COMMIT_EVERY = 50
COMMIT_SECONDS = 0.5
CONCURRENCY = 50
USER_AGENT = "Guiche-Webhooks/1.0"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    body: str | None = None
    retry_after: float | None = None
    refused: bool = False
    #: Sent as `X-Guiche-Delivery` and the delivery log's row id: one attempt, one id.
    delivery_id: uuid.UUID | None = None


def event_id(seq: int) -> str:
    """Stable per event, the same on every (re)delivery: receivers dedupe on it."""
    return f"evt_{seq}"


def payload(subscription_id: uuid.UUID, events: list[LoggedEvent]) -> bytes:
    return orjson.dumps(
        {
            "subscription_id": str(subscription_id),
            "events": [
                {
                    "id": event_id(e.seq),
                    "seq": e.seq,
                    "type": e.type,
                    "created_at": e.created_at,
                    "conversation_id": str(e.conversation_id) if e.conversation_id else None,
                    "data": e.data,
                }
                for e in events
            ],
        }
    )


def wanted(sub: dict[str, Any], event: LoggedEvent) -> bool:
    """The subscription's channel and department filters (types are filtered in SQL)."""
    channels = sub["channel_ids"]
    if channels and str(event.data.get("channel_id")) not in {str(c) for c in channels}:
        return False
    departments = sub["department_ids"]
    return not departments or event.department_id in set(departments)


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def backoff(failures: int, retry_after: float | None) -> float:
    """Seconds until the next attempt after the `failures`-th failure in a row."""
    if retry_after is not None:
        return min(max(retry_after, 1.0), MAX_RETRY_AFTER)
    ceiling = min(MAX_DELAY, BASE_DELAY * 2 ** min(failures - 1, 20))
    return random.uniform(ceiling / 2, ceiling)


async def signing_secrets(services: Any, sub: dict[str, Any], now: dt.datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous during its overlap."""
    if "secret" not in sub:
        sub = {**sub, **dict(zip(
            ("secret", "previous_secret", "previous_secret_until"),
            await store.sealed_secrets(services, sub["id"]), strict=True,
        ))}
    secrets = [decrypt_json(services, sub["secret"])["v"]]
    until = sub["previous_secret_until"]
    if sub["previous_secret"] and until is not None and until > now:
        secrets.append(decrypt_json(services, sub["previous_secret"])["v"])
    return secrets


@functools.lru_cache(maxsize=64)
def post_timeout(limit_seconds: float) -> aiohttp.ClientTimeout:
    """One immutable timeout per limit (built once, not per POST): the whole POST within
    `limit_seconds`, the connection within 5 s of it (one timer per POST, not one per read)."""
    return aiohttp.ClientTimeout(total=limit_seconds, sock_connect=min(5.0, limit_seconds))


async def post(
    client: aiohttp.ClientSession, url: str, body: bytes, secrets: list[str], *,
    limit_seconds: float, delivery_id: uuid.UUID, check: bool = True,
) -> Outcome:
    """One signed POST; never raises for the receiver's or the network's failures.

    `check=False` skips the URL's static checks when they already passed in this pass
    (same URL, same rules: a literal address does not change; a name is still checked by
    the resolver on every new connection)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Guiche-Delivery": str(delivery_id),
        signing.HEADER: signing.header_value(secrets, int(time.time()), body),
    }
    started = time.perf_counter()
    try:
        if check:
            check_url(url)
        async with client.post(
            url, data=body, headers=headers, timeout=post_timeout(limit_seconds),
            allow_redirects=False,
        ) as response:
            raw = await response.content.read(BODY_KEEP * 4)
            status = response.status
            retry_after = response.headers.get("Retry-After")
    except TargetRefused as exc:
        return Outcome(
            ok=False, error=f"refused: {exc}", refused=True, delivery_id=delivery_id
        )
    except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
        refused = refusal_of(exc)
        if refused is not None:
            return Outcome(
                ok=False, error=f"refused: {refused}", refused=True, delivery_id=delivery_id
            )
        elapsed = int((time.perf_counter() - started) * 1000)
        return Outcome(
            ok=False, latency_ms=elapsed, error=f"{type(exc).__name__}: {exc}"[:500],
            delivery_id=delivery_id,
        )
    elapsed_s = time.perf_counter() - started
    metrics.LATENCY.observe(elapsed_s)
    ok = 200 <= status < 300
    return Outcome(
        ok=ok,
        status_code=status,
        latency_ms=int(elapsed_s * 1000),
        body=raw.decode("utf-8", "replace")[:BODY_KEEP],
        error=None if ok else f"HTTP {status}",
        retry_after=None if ok else retry_after_seconds(retry_after, dt.datetime.now(dt.UTC)),
        delivery_id=delivery_id,
    )


async def enabled_settings(services: Any) -> dict[uuid.UUID, WebhooksSettings]:
    """Companies that enabled the plugin, with their (valid) settings."""
    return {
        ctx.tenant_id: ctx.settings
        for ctx in await enabled_contexts(services, "webhooks")
        if isinstance(ctx.settings, WebhooksSettings)
    }


async def deliver_due(
    services: Any, *, now: dt.datetime | None = None, client: aiohttp.ClientSession | None = None,
    tenants: set[uuid.UUID] | None = None,
) -> int:
    """One pass over every due subscription (of `tenants` only, when given); returns the
    events acknowledged."""
    now = now or dt.datetime.now(dt.UTC)
    companies = await enabled_settings(services)
    if tenants is not None:
        companies = {t: s for t, s in companies.items() if t in tenants}
    if not companies:
        return 0
    horizon = await settled_seq(services)
    if horizon is None:
        return 0  # an old transaction is still open: wait rather than risk a gap
    subs = await store.claim_due(services, list(companies), now, LEASE_SECONDS, 500)
    if not subs:
        return 0
    own = client is None
    http = client or delivery_client()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(sub: dict[str, Any]) -> int:
        async with gate:
            try:
                return await run_subscription(
                    services, http, sub, companies[sub["tenant"]], horizon, now
                )
            except Exception:
                log.exception("webhooks: subscription %s failed a pass", sub["id"])
                await store.release(services, sub, now)
                return 0

    try:
        return sum(await asyncio.gather(*(one(sub) for sub in subs)))
    finally:
        if own:
            await http.close()


async def run_subscription(
    services: Any, client: aiohttp.ClientSession, sub: dict[str, Any],
    settings: WebhooksSettings, horizon: int, now: dt.datetime,
) -> int:
    """Deliver in order from the cursor until caught up (or the pass's time is up).

    Acknowledged POSTs are logged and the cursor moved every `COMMIT_EVERY` POSTs or
    `COMMIT_SECONDS`: one statement for many. Neither that write nor the next page's read
    holds the POSTs up: the commit runs while the next POSTs go out (one commit in flight,
    waited for before the next one, and before anything else is recorded), and the next
    page is read while this one is posted. A worker killed in between delivers the
    uncommitted POSTs again — at least once, same ids.
    """
    run = _SubscriptionRun(services, sub, now)
    types = list(sub["event_types"]) or None
    delivered = 0
    secrets = await signing_secrets(services, sub, now)
    deadline = time.monotonic() + LEASE_SECONDS / 3  # well inside the lease
    read_ahead = min(1000, max(100, settings.max_batch * 20))

    def read_after(seq: int) -> asyncio.Task[list[LoggedEvent]]:
        return asyncio.ensure_future(
            read_events(
                services, sub["tenant"], after=seq, limit=read_ahead, types=types, until=horizon
            )
        )

    next_page: asyncio.Task[list[LoggedEvent]] | None = read_after(run.acked)
    try:
        while next_page is not None and time.monotonic() < deadline:
            events = await next_page
            next_page = read_after(events[-1].seq) if len(events) == read_ahead else None
            for start in range(0, len(events), settings.max_batch):
                chunk = events[start : start + settings.max_batch]
                batch = [e for e in chunk if wanted(sub, e)]
                if batch:
                    outcome = await send(
                        services, client, sub, settings, batch, secrets, check=not delivered
                    )
                    if not outcome.ok:
                        if not await run.settle():
                            return delivered
                        await log_attempt(services, sub, batch, outcome, now, kind="delivery")
                        await fail(services, sub, settings, outcome, now)
                        return delivered
                    run.acknowledge(batch, outcome)
                    delivered += len(batch)
                    observe(batch)
                run.acked = chunk[-1].seq
                if run.due() and not await run.flush():
                    return delivered  # the lease was lost: another worker carries on
        if not await run.settle():
            return delivered
        if next_page is None and time.monotonic() < deadline:
            await store.skip_to(services, sub, horizon)  # caught up: nothing more it wants
        await store.release(services, sub, now)
        return delivered
    finally:
        if next_page is not None:
            next_page.cancel()
        await run.abandon()


class _SubscriptionRun:
    """One pass's acknowledged-but-unrecorded POSTs and its commit in flight."""

    def __init__(self, services: Any, sub: dict[str, Any], now: dt.datetime) -> None:
        self.services, self.sub, self.now = services, sub, now
        self.cursor: int = sub["cursor"]  # the last seq whose commit was started
        self.acked: int = self.cursor  # the last seq acknowledged (or skipped)
        self.pending: list[dict[str, Any]] = []
        self.flushed_at = time.monotonic()
        self.in_flight: asyncio.Task[bool] | None = None

    def acknowledge(self, batch: list[LoggedEvent], outcome: Outcome) -> None:
        self.pending.append(
            {"id": str(outcome.delivery_id), "seqs": [e.seq for e in batch],
             "status_code": outcome.status_code,
             "latency_ms": outcome.latency_ms, "response_body": outcome.body}
        )

    def due(self) -> bool:
        return (
            len(self.pending) >= COMMIT_EVERY
            or time.monotonic() - self.flushed_at > COMMIT_SECONDS
        )

    async def flush(self) -> bool:
        """Wait for the commit in flight, then start one for what is pending (not waited
        for). False when the lease was lost."""
        if self.in_flight is not None:
            task, self.in_flight = self.in_flight, None
            if not await task:
                return False
        if self.acked == self.cursor and not self.pending:
            return True
        attempts, self.pending, self.flushed_at = self.pending, [], time.monotonic()
        self.cursor = self.acked
        self.in_flight = asyncio.ensure_future(
            store.delivered(
                self.services, self.sub, cursor=self.cursor, now=self.now,
                lease_seconds=LEASE_SECONDS, attempts=attempts,
            )
        )
        return True

    async def settle(self) -> bool:
        """Everything acknowledged so far recorded; False when the lease was lost."""
        if not await self.flush():
            return False
        task, self.in_flight = self.in_flight, None
        return task is None or await task

    async def abandon(self) -> None:
        """On the way out (also by an exception): let a started commit finish."""
        if self.in_flight is not None:
            await asyncio.gather(self.in_flight, return_exceptions=True)
            self.in_flight = None


def observe(batch: list[LoggedEvent]) -> None:
    arrived = dt.datetime.now(dt.UTC)
    for event in batch:
        metrics.LAG.observe(max(0.0, (arrived - event.created_at).total_seconds()))
    metrics.EVENTS.inc(len(batch))


async def send(
    services: Any, client: aiohttp.ClientSession, sub: dict[str, Any], settings: WebhooksSettings,
    batch: list[LoggedEvent], secrets: list[str], *, check: bool = True,
) -> Outcome:
    outcome = await post(
        client, sub["url"], payload(sub["id"], batch), secrets,
        limit_seconds=settings.timeout_seconds, delivery_id=uuid.uuid4(), check=check,
    )
    metrics.DELIVERED[
        "ok" if outcome.ok else "refused" if outcome.refused
        else "http_error" if outcome.status_code else "network"
    ].inc()
    return outcome


async def log_attempt(
    services: Any, sub: dict[str, Any], batch: list[LoggedEvent], outcome: Outcome,
    now: dt.datetime, *, kind: str,
) -> None:
    await store.log_delivery(
        services, sub, kind=kind, seqs=[e.seq for e in batch], succeeded=outcome.ok,
        status_code=outcome.status_code, latency_ms=outcome.latency_ms, error=outcome.error,
        response_body=outcome.body, at=now, delivery_id=outcome.delivery_id,
    )


async def fail(
    services: Any, sub: dict[str, Any], settings: WebhooksSettings, outcome: Outcome,
    now: dt.datetime,
) -> None:
    """Open the circuit until the next attempt, or pause once the retry budget is spent."""
    failing_since = sub["failing_since"] or now
    failures = sub["failures"] + 1
    reason = None
    if outcome.status_code == 410:
        reason = "the receiver answered 410 Gone"
    elif now - failing_since >= dt.timedelta(hours=settings.retry_hours):
        reason = (
            f"failing since {failing_since.isoformat()} ({failures} attempts);"
            f" last error: {outcome.error}"
        )
    delay = backoff(failures, outcome.retry_after)
    await store.record_failure(
        services, sub, error=outcome.error or "failed",
        next_attempt_at=now + dt.timedelta(seconds=delay), pause_reason=reason, now=now,
    )
    if reason is not None:
        metrics.PAUSES.inc()
        log.warning("webhooks: subscription %s paused: %s", sub["id"], reason)
        await publish_event(
            services, sub["tenant"], "webhook.paused",
            {"subscription_id": str(sub["id"]), "url": sub["url"], "reason": reason,
             "cursor": sub["cursor"]},
        )


async def redeliver(
    services: Any, sub: dict[str, Any], settings: WebhooksSettings, event: LoggedEvent,
    *, client: aiohttp.ClientSession | None = None,
) -> Outcome:
    """Send one event again now (outside the cursor), logged as a `redelivery`."""
    now = dt.datetime.now(dt.UTC)
    own = client is None
    http = client or delivery_client()
    try:
        secrets = await signing_secrets(services, sub, now)
        outcome = await send(services, http, sub, settings, [event], secrets)
    finally:
        if own:
            await http.close()
    await log_attempt(services, sub, [event], outcome, now, kind="redelivery")
    return outcome
