"""The sender: drives one running campaign in slices, at most once per recipient and run.

`drive(campaign_id)` is a taskiq task. It takes the campaign's *driver lease* (one driver
at a time: a second worker, or a task delivered twice, finds it held and leaves), then
loops: wait for the next slot (the campaign's jittered gap, then the channel's shared
`guiche.ratelimit` bucket for campaign traffic, a budget separate from agents' live
sends), claim the next target row in Postgres (`sending`, with a lease), hand the message
to core's outbox with `guiche.plugin.send_message` under the idempotency key
`campaign:<target id>` and the origin `campaign:<campaign id>` (core carries it to the
provider's usage rows: cost per campaign), and settle the row (`queued` with the message
id, or `failed` / `opted_out` with the reason). A slice ends after `SLICE_SECONDS`; the
driver then re-kicks itself, so a campaign of any size is never more than one task on
Redis.

Crashes: a driver killed between claim and settle leaves a `sending` row whose lease
expires and a campaign lease that expires; the scheduler's `tick` re-drives campaigns
without a live driver, and the abandoned row is claimed again first. Sending it again
uses the same idempotency key, so core answers with the message already stored (if the
first attempt got that far) instead of a second one: each target gets exactly one
message per run. The outbox makes the provider call itself exactly-once.

Pause/cancel take effect within `PAUSE_CHECK_SECONDS`: every wait re-reads the status.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from guiche.plugin import (
    ApiError,
    channel_facts,
    company_locale,
    publish_event,
    send_message,
)

from . import metrics, store
from .content import Content, render, variables_for
from .pacing import SendWindow, gap_seconds, in_window
from .settings import load_settings

log = logging.getLogger("guiche.plugin.campaigns")

SLICE_SECONDS = 20.0
DRIVER_LEASE_SECONDS = 30.0
TARGET_LEASE_SECONDS = 30.0
PAUSE_CHECK_SECONDS = 0.25
STATUS_FRESH_SECONDS = 0.1
"""A slot's wait re-reads the campaign's status unless it was read this recently (at
80/s, once every 8 sends rather than per send; slower campaigns still read it per slot)."""
CATCH_UP_SECONDS = 1.0
"""A driver late on its schedule by less than this (a slow round trip, a busy loop)
catches up; later than that it restarts the schedule rather than bursting."""
CLAIM_BATCH = 32
CLAIM_AHEAD_SECONDS = 0.5
"""Targets are claimed in batches of up to `CLAIM_BATCH`, about this many seconds of the
campaign's sends, and each is sent at its own slot; those not sent go back (`RELEASE`)."""
EXPIRED_CHECK_SECONDS = 5.0
PROGRESS_DB_SHARE = 0.05
"""Progress is counted at most once a second, and less often when counting a big
campaign takes longer than this share of the time between counts."""
CAP_RECHECK = 20
MAX_IN_FLIGHT = 32
"""Targets being handed to the outbox at once by one driver (the pacing schedule still
decides when each starts); each holds its own claim."""
DRIVE_TASK = "campaigns.drive"

clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)  # noqa: E731 - tests swap it


def shared_bucket_key(channel_id: uuid.UUID) -> str:
    """The `guiche.ratelimit` key every campaign on one channel draws from."""
    return f"campaigns:channel:{channel_id}"


async def _pool(services: Any) -> Any:
    pool = services.db.pool
    assert pool is not None, "the database pool opens with the app"
    return pool


async def counts(services: Any, campaign_id: uuid.UUID, run: int) -> dict[str, int]:
    pool = await _pool(services)
    return store.counts_of(await pool.fetch(store.COUNTS, campaign_id, run))


_SAMPLES: dict[tuple[uuid.UUID, int], collections.deque[tuple[float, int]]] = {}
"""(campaign, run) → recent (time, targets done) samples of this process: the rate over
the last minute without scanning the ledger for recent sends."""


def _rate(key: tuple[uuid.UUID, int], done: int) -> float:
    now = asyncio.get_running_loop().time()
    samples = _SAMPLES.setdefault(key, collections.deque(maxlen=240))
    while samples and samples[0][0] < now - 60.0:
        samples.popleft()
    samples.append((now, done))
    first_at, first_done = samples[0]
    return (done - first_done) / (now - first_at) if now > first_at else 0.0


async def progress(services: Any, campaign: Any, *, force: bool = False) -> None:
    """`campaign.progress` at most once a second per campaign (across processes)."""
    pool = await _pool(services)
    if not force and await pool.fetchval(store.PROGRESS_DUE, campaign["id"]) is None:
        return
    by_state = await counts(services, campaign["id"], campaign["run"])
    left = by_state["pending"] + by_state["sending"]
    key = (campaign["id"], campaign["run"])
    rate = _rate(key, sum(by_state.values()) - left)
    if force:
        _SAMPLES.pop(key, None)
    eta = left / rate if rate > 0 else None
    await publish_event(
        services,
        campaign["tenant"],
        "campaign.progress",
        {
            "campaign_id": str(campaign["id"]),
            "run": campaign["run"],
            "status": campaign["status"],
            "counts": by_state,
            "rate_per_second": round(rate, 3),
            "eta_seconds": round(eta, 1) if eta is not None else None,
        },
    )


async def announce(services: Any, campaign: Any, previous: str | None) -> None:
    """Every lifecycle transition is recorded in the event log (the audit) and pushed."""
    metrics.TRANSITIONS.labels(campaign["status"]).inc()
    await publish_event(
        services,
        campaign["tenant"],
        "campaign.updated",
        {"campaign_id": str(campaign["id"]), "status": campaign["status"], "previous": previous},
    )
    if campaign["status"] == "finished":
        by_state = await counts(services, campaign["id"], campaign["run"])
        await publish_event(
            services,
            campaign["tenant"],
            "campaign.finished",
            {"campaign_id": str(campaign["id"]), "run": campaign["run"], "counts": by_state},
        )


async def kick(services: Any, campaign_id: uuid.UUID) -> None:
    if services.tasks is None:
        return
    try:
        await services.tasks.fire(DRIVE_TASK, str(campaign_id))
    except Exception:  # the scheduler's tick re-drives it
        log.exception("could not enqueue the campaign driver", extra={"campaign": campaign_id})


async def _current(services: Any, campaign_id: uuid.UUID, token: uuid.UUID) -> Any | None:
    """The campaign while this driver still holds it and it is running, else None."""
    pool = await _pool(services)
    row = await pool.fetchrow(store.DRIVEN, campaign_id)
    if row is None or row["status"] != "running" or row["driver_token"] != token:
        return None
    return row


@dataclass
class _Driver:
    """One slice's state: its lease, schedule, cursor and the targets it holds."""

    campaign_id: uuid.UUID
    token: uuid.UUID
    pace_at: float | None = None
    checked_at: float = -math.inf
    cursor: int = 0
    expired_at: float = -math.inf
    claimed: collections.deque[tuple[float, Any]] = field(default_factory=collections.deque)
    progress_at: float = -math.inf
    progress_task: asyncio.Task[Any] | None = None


async def _running(services: Any, driver: _Driver) -> bool:
    if await _current(services, driver.campaign_id, driver.token) is None:
        return False
    driver.checked_at = asyncio.get_running_loop().time()
    return True


async def _wait(services: Any, driver: _Driver, seconds: float) -> bool:
    """Sleep `seconds`, re-reading the status often; False as soon as it stops running."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while True:
        left = until - loop.time()
        if left <= 0:
            if loop.time() - driver.checked_at < STATUS_FRESH_SECONDS:
                return True
            return await _running(services, driver)
        await asyncio.sleep(min(left, PAUSE_CHECK_SECONDS))
        if not await _running(services, driver):
            return False


async def _slot(services: Any, campaign: Any, driver: _Driver, settings: Any) -> bool:
    """Wait for the campaign's next slot, then for the channel's shared budget.

    Slots are a schedule (`driver.pace_at`, each a jittered gap after the previous slot),
    not a gap after each send ends, so the time a send takes does not slow the rate; a
    driver that fell more than `CATCH_UP_SECONDS` (or one gap) behind restarts the
    schedule rather than bursting to catch up."""
    loop = asyncio.get_running_loop()
    gap = gap_seconds(campaign["rate_per_minute"], campaign["jitter"])
    now = loop.time()
    due = driver.pace_at if driver.pace_at is not None else now
    if due < now - max(gap, CATCH_UP_SECONDS):
        due = now
    driver.pace_at = due + gap
    if not await _wait(services, driver, due - now):
        return False
    per_minute = settings.channel_rate_per_minute
    if not per_minute:
        return True
    while True:
        decision = await services.limiter.reserve(
            shared_bucket_key(campaign["channel"]),
            rate=per_minute / 60.0,
            burst=1,
            max_wait=5.0,
        )
        if decision.allowed:
            return await _wait(services, driver, decision.wait)
        if not await _wait(services, driver, max(decision.retry_after, 0.05)):
            return False


def warmup_cap(settings: Any, channel_age: dt.timedelta) -> int | None:
    """Today's cap for a young number: the first day's, doubling daily, for N days."""
    days = channel_age.days
    if not settings.warmup_days or days >= settings.warmup_days:
        return None
    return int(settings.warmup_first_day_cap * 2 ** max(days, 0))


async def _cap_left(services: Any, campaign: Any, timezone: str, settings: Any) -> int | None:
    """Sends the number has left today under its daily cap (the campaign's, and the
    warm-up ramp's); None without a cap. A count over today's sends of the channel, so
    the driver asks every `CAP_RECHECK` sends and counts its own in between."""
    pool = await _pool(services)
    caps = [campaign["daily_cap"]] if campaign["daily_cap"] else []
    if settings.warmup_days:
        facts = await channel_facts(services, campaign["tenant"], campaign["channel"])
        created = facts.created_at if facts is not None else None
        ramp = warmup_cap(settings, clock() - created) if created is not None else None
        caps += [ramp] if ramp is not None else []
    if not caps:
        return None
    local = clock().astimezone(ZoneInfo(timezone))
    midnight = dt.datetime.combine(local.date(), dt.time(0), tzinfo=local.tzinfo)
    return min(caps) - await pool.fetchval(store.SENT_TODAY, campaign["channel"], midnight)


def origin_of(campaign_id: Any) -> str:
    """The tag core carries from a campaign's messages to their provider usage rows, so
    cost per campaign is core's `usage_totals(origin=...)` (and the reports plugin's)."""
    return f"campaign:{campaign_id}"


async def send_one(services: Any, campaign: Any, target: Any) -> str:
    """Hand one claimed target to core's outbox and settle its row; returns its state."""
    pool = await _pool(services)
    content = Content.model_validate(store.loads(campaign["content"]))
    values = variables_for(target["name"], target["phone"], store.loads(target["variables"]))
    message = render(content.message(), values)
    by = {"contact_id": target["contact"]} if target["contact"] else {"phone": target["phone"]}

    async def record(sent: Any) -> None:
        state = store.STATE_OF_STATUS.get(sent.status, "queued")
        await pool.execute(
            store.SETTLE_QUEUED, target["id"], sent.message_id, sent.contact_id, state
        )

    try:
        sent = await send_message(
            services,
            campaign["tenant"],
            channel_id=campaign["channel"],
            message=message,
            idempotency_key=f"campaign:{target['id']}",
            contact_name=target["name"],
            after_store=record,
            origin=origin_of(campaign["id"]),
            **by,
        )
    except ApiError as exc:
        state = "opted_out" if exc.code == "contact_opted_out" else "failed"
        reason = {"code": exc.code, "message": exc.message, "details": exc.details}
        await pool.execute(store.SETTLE_FAILED, target["id"], state, store.jsonb(reason))
        metrics.SENDS.labels(state).inc()
        return state
    except Exception:
        # Unknown outcome (database away, a bug): leave the claim to expire and be retried
        # under the same idempotency key, which cannot send twice.
        log.exception("campaign send failed", extra={"target": str(target["id"])})
        raise
    if sent.replayed:  # stored by an earlier, interrupted attempt: record it now
        await record(sent)
    metrics.SENDS.labels("replayed" if sent.replayed else "queued").inc()
    return store.STATE_OF_STATUS.get(sent.status, "queued")


async def finish(services: Any, campaign: Any) -> None:
    pool = await _pool(services)
    done = await pool.fetchrow(
        store.SET_STATUS, campaign["id"], campaign["tenant"], "finished", ["running"]
    )
    if done is not None:
        await progress(services, done, force=True)
        await announce(services, done, "running")


async def drive(campaign_id: str, *, services: Any) -> str:
    """The `campaigns.drive` task: one slice of one campaign (see the module docstring)."""
    target_id = store.as_uuid(campaign_id)
    pool = await _pool(services)
    token = uuid.uuid4()
    if await pool.fetchval(store.TAKE_DRIVER, target_id, token, DRIVER_LEASE_SECONDS) is None:
        return "busy"
    outcome = "stopped"
    try:
        outcome = await _slice(services, target_id, token)
    finally:
        await pool.execute(store.DROP_DRIVER, target_id, token)
    if outcome == "more":
        await kick(services, target_id)
    return outcome


async def _slice(services: Any, campaign_id: uuid.UUID, token: uuid.UUID) -> str:
    """Send until the slice ends; up to `MAX_IN_FLIGHT` claimed targets are being handed
    to the outbox at once (each claimed by this driver alone), and all have settled
    before the driver lets go of its lease; claimed targets not handed go back."""
    inflight: set[asyncio.Task[Any]] = set()
    driver = _Driver(campaign_id, token)
    try:
        return await _sending(services, driver, inflight)
    finally:
        if inflight:
            await asyncio.gather(*inflight, return_exceptions=True)
        await _release(services, driver)
        if driver.progress_task is not None:
            await asyncio.gather(driver.progress_task, return_exceptions=True)


async def _release(services: Any, driver: _Driver) -> None:
    if not driver.claimed:
        return
    rows = [row for _, row in driver.claimed]
    driver.claimed.clear()
    pool = await _pool(services)
    try:
        await pool.execute(
            store.RELEASE,
            driver.campaign_id,
            [row["id"] for row in rows],
            [row["attempts"] for row in rows],
        )
    except Exception:  # their leases expire and the next driver claims them again
        log.exception("could not release claimed targets", extra={"n": len(rows)})


async def _claim(services: Any, campaign: Any, driver: _Driver, *, rescan: bool) -> bool:
    """Fill `driver.claimed`: expired claims first (at the start, then now and then), then
    the next pending rows after the cursor (`rescan`: from the start again, for rows a
    release put back behind it). False when there was nothing to claim."""
    pool = await _pool(services)
    loop = asyncio.get_running_loop()
    per_second = campaign["rate_per_minute"] / 60.0
    batch = max(1, min(CLAIM_BATCH, math.ceil(per_second * CLAIM_AHEAD_SECONDS)))
    rows: list[Any] = []
    if rescan or loop.time() >= driver.expired_at:
        driver.expired_at = loop.time() + EXPIRED_CHECK_SECONDS
        rows = list(
            await pool.fetch(
                store.CLAIM_EXPIRED, driver.campaign_id, campaign["run"],
                TARGET_LEASE_SECONDS, batch,
            )
        )  # fmt: skip
    if rescan:
        driver.cursor = 0
    if len(rows) < batch:
        fresh = await pool.fetch(
            store.CLAIM_NEXT, driver.campaign_id, campaign["run"], TARGET_LEASE_SECONDS,
            driver.cursor, batch - len(rows),
        )  # fmt: skip
        rows += fresh
        if fresh:
            driver.cursor = max(driver.cursor, *(row["seq"] for row in fresh))
    now = loop.time()
    driver.claimed.extend((now, row) for row in sorted(rows, key=lambda row: row["seq"]))
    return bool(rows)


async def _next_target(services: Any, campaign: Any, driver: _Driver) -> Any | None:
    """The next claimed target, claiming a batch when none is held; None when the run
    has nothing left to claim. A target held long (a throttled channel) goes back first,
    so none is sent on a lease about to expire."""
    loop = asyncio.get_running_loop()
    if driver.claimed and driver.claimed[0][0] < loop.time() - TARGET_LEASE_SECONDS / 3:
        await _release(services, driver)
    if not driver.claimed and not await _claim(services, campaign, driver, rescan=False):
        if not await _claim(services, campaign, driver, rescan=True):
            return None
    return driver.claimed.popleft()[1]


async def _send_guarded(services: Any, campaign: Any, target: Any, slots: Any) -> None:
    try:
        await send_one(services, campaign, target)
    except Exception:  # logged in send_one; the claim expires and is retried, same key
        pass
    finally:
        slots.release()


async def _progress_quietly(services: Any, campaign: Any, driver: _Driver) -> None:
    """Progress off the send loop: counting a big campaign must not hold up its sends."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await progress(services, campaign)
    except Exception:
        log.exception("campaign progress failed", extra={"campaign": str(campaign["id"])})
    took = loop.time() - started
    driver.progress_at = loop.time() + max(1.0 - took, took / PROGRESS_DB_SHARE)


async def _sending(services: Any, driver: _Driver, inflight: set[asyncio.Task[Any]]) -> str:
    pool = await _pool(services)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SLICE_SECONDS
    campaign_id, token = driver.campaign_id, driver.token
    campaign = await _current(services, campaign_id, token)
    if campaign is None:
        return "stopped"
    driver.checked_at = loop.time()
    locale = await company_locale(services, campaign["tenant"])
    settings = await load_settings(services, campaign["tenant"])
    if settings is None:
        return "disabled"  # the company turned the plugin off: nothing is sent
    window = (
        SendWindow.model_validate(store.loads(campaign["send_window"]))
        if campaign["send_window"]
        else None
    )
    renewed = loop.time()  # TAKE_DRIVER just set the lease
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    cap_left = await _cap_left(services, campaign, locale.timezone, settings)
    since_check = 0
    if cap_left is not None and cap_left <= 0:
        return "daily_cap"
    while loop.time() < deadline:
        if not in_window(window, clock(), locale.timezone):
            return "outside_window"  # the tick re-drives it; nothing is claimed meanwhile
        if cap_left is not None and (cap_left <= 0 or since_check >= CAP_RECHECK):
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
            cap_left = await _cap_left(services, campaign, locale.timezone, settings)
            since_check = 0
            if cap_left is not None and cap_left <= 0:
                return "daily_cap"
        target = await _next_target(services, campaign, driver)
        if target is None:
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
            if await pool.fetchval(store.OPEN_LEFT, campaign_id, campaign["run"]) == 0:
                await finish(services, campaign)
                return "finished"
            return "waiting"  # another claim's lease is still live: re-driven later
        if not await _slot(services, campaign, driver, settings):
            driver.claimed.appendleft((loop.time(), target))  # released with the rest
            return "stopped"
        if loop.time() - renewed > DRIVER_LEASE_SECONDS / 3:  # the lease never runs out
            renewed = loop.time()
            await pool.execute(
                "UPDATE campaigns SET driver_until = now() + make_interval(secs => $2)"
                " WHERE id = $1 AND driver_token = $3",
                campaign_id,
                DRIVER_LEASE_SECONDS,
                token,
            )
        await slots.acquire()
        task = asyncio.create_task(_send_guarded(services, campaign, target, slots))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        if cap_left is not None:  # another campaign on the number may send too: recheck
            cap_left -= 1
            since_check += 1
        if loop.time() >= driver.progress_at and (
            driver.progress_task is None or driver.progress_task.done()
        ):  # the database decides across processes
            driver.progress_at = math.inf  # set again when this one is done
            driver.progress_task = asyncio.create_task(
                _progress_quietly(services, campaign, driver)
            )
    return "more"


async def tick(*, services: Any) -> dict[str, int]:
    """The scheduler's pass: start scheduled campaigns that are due, re-drive running
    ones that no live driver holds (a crashed worker, a lost kick, a closed window)."""
    pool = await _pool(services)
    started = await pool.fetch(store.DUE_SCHEDULED)
    for row in started:
        campaign = await pool.fetchrow(store.GET, row["id"], row["tenant"])
        await announce(services, campaign, "scheduled")
    stalled = await pool.fetch(store.STALLED)
    for row in stalled:
        await kick(services, row["id"])
    return {"started": len(started), "redriven": len(stalled)}
