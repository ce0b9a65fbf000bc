"""Live polling: what is new upstream, every poll interval, into the live path.

The task `chatguru.poll` runs every second on the one scheduler; for each account with
polling enabled whose interval has passed it takes the account's lease and polls:

1. the chat list from its first page (most recently updated first), page by page until
   a page brings no chat that is new or changed (`updated` differs from the `updated`
   whose messages are stored);
2. for each such chat, its message pages from the newest until the chat's watermark
   (the newest message id stored); a chat without one reads only its newest page (its
   history is the catalog's job);
3. the new messages go through `guiche.plugin.ingest_batch` in batches, exactly as a
   webhook's would: stored once (dedup by ChatGuru's id), `message.new` events, hooks;
   then the watermarks move, and each chat's `updated` is recorded as read.

A chat whose read fails is recorded as not read (the poll's other chats are stored), so
the next poll reads it again: a failure delays a message, never loses it. A chat with
more than `MAX_MESSAGE_PAGES` pages new since its watermark (polling was off for long)
gets its newest pages now and the rest from the catalog: its catalog checkpoint is reset
and a catalog job is started (or, with one running, the status says to run it again).

One poller per account across every process: the lease is a row update in Postgres
(`lease_owner`, `lease_until`), renewed while the poll runs, released after it and
taken over when its holder died and the lease ran out. Delivery is at-least-once and
dedup is by provider id, so a poll repeated after a crash adds nothing twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from guiche.channels import InboundMessage, WebhookBatch
from guiche.plugin import ApiError, ingest_batch, load_channel, tenant_plugin_context
from guiche_chatguru import catalog, metrics, store
from guiche_chatguru.adapter import CHANNEL_TYPE, ChatGuruAdapter
from guiche_chatguru.catalog import PLUGIN
from guiche_chatguru.client import ChatGuruClient, ChatGuruError
from guiche_chatguru.config import ChatGuruSettings
from guiche_chatguru.mapping import copy_notes, map_conversations
from guiche_chatguru.parse import ChatRecord, Note, Odd, parse_chat, parse_item

log = logging.getLogger("guiche.plugin.chatguru")

TASK = "poll"
LEASE = dt.timedelta(seconds=60)
#: How often a running poll renews its lease (well inside `LEASE`).
RENEW_SECONDS = 15.0
INGEST_BATCH = 200
MAX_LIST_PAGES = 50
MAX_MESSAGE_PAGES = 20
#: Lag is reported for messages newer than this (older ones are backfill, not lag).
LAG_WINDOW = dt.timedelta(hours=1)


async def poll_due(services: Any) -> int:
    """The scheduled task: poll every enabled account whose interval has passed; returns
    how many polls ran here. It runs every second in every deployment, so a database
    that is going away (shutdown, failover) costs one warning line, not a traceback."""
    try:
        rows = await store.raw(
            "SELECT id, tenant, last_poll_at FROM chatguru_accounts WHERE polling_enabled "
            "AND (lease_until IS NULL OR lease_until < now())"
        )
    except Exception as exc:
        log.warning("chatguru poll skipped: %s: %s", type(exc).__name__, exc)
        return 0
    now = dt.datetime.now(dt.UTC)
    due: list[tuple[dict[str, Any], ChatGuruSettings]] = []
    for row in rows:
        ctx = await tenant_plugin_context(services, row["tenant"], PLUGIN)
        if ctx is None:
            continue
        settings: ChatGuruSettings = ctx.settings
        last = row["last_poll_at"]
        if last is not None and now - last < _gap(settings):
            continue
        due.append((row, settings))
    results = await asyncio.gather(
        *(
            poll_account(services, row["tenant"], row["id"], settings, gap=_gap(settings))
            for row, settings in due
        ),
        return_exceptions=True,
    )
    for (row, _), result in zip(due, results, strict=True):
        if isinstance(result, Exception):
            metrics.POLL_ERRORS.inc()
            log.warning(
                "chatguru poll of account %s failed: %s: %s",
                row["id"],
                type(result).__name__,
                result,
            )
    return sum(1 for result in results if isinstance(result, dict))


def _gap(settings: ChatGuruSettings) -> dt.timedelta:
    """Polls start one interval apart; the half second absorbs the scheduler's jitter."""
    return dt.timedelta(seconds=settings.poll_interval_seconds - 0.5)


async def _lease(
    tenant_id: uuid.UUID, account_id: uuid.UUID, owner: str, gap: dt.timedelta | None
) -> bool:
    """Take the account's lease (and, with `gap`, only if no poll started within it)."""
    rows = await store.raw(
        "UPDATE chatguru_accounts SET lease_owner = {}, lease_until = now() + {}::interval, "
        "last_poll_at = now() WHERE id = {} AND tenant = {} AND polling_enabled "
        "AND (lease_until IS NULL OR lease_until < now()) "
        "AND ({}::interval IS NULL OR last_poll_at IS NULL "
        "OR last_poll_at <= now() - {}::interval) "
        "RETURNING id",
        owner,
        LEASE,
        account_id,
        tenant_id,
        gap,
        gap,
    )
    return bool(rows)


async def _renew(account_id: uuid.UUID, owner: str) -> None:
    """Keep the lease while a long poll runs (a backlog after an outage can take longer
    than `LEASE`), so no second poller starts on the account meanwhile."""
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        await store.raw(
            "UPDATE chatguru_accounts SET lease_until = now() + {}::interval "
            "WHERE id = {} AND lease_owner = {}",
            LEASE,
            account_id,
            owner,
        )


async def _release(account_id: uuid.UUID, owner: str) -> None:
    await store.raw(
        "UPDATE chatguru_accounts SET lease_owner = NULL, lease_until = NULL "
        "WHERE id = {} AND lease_owner = {}",
        account_id,
        owner,
    )


async def poll_account(
    services: Any,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    settings: ChatGuruSettings,
    *,
    gap: dt.timedelta | None = None,
) -> dict[str, Any] | None:
    """One poll of one account under its lease; None when another poller holds it.
    `last_poll_at` is when the poll started, so polls start one interval apart."""
    owner = uuid.uuid4().hex
    if not await _lease(tenant_id, account_id, owner, gap):
        return None
    started = time.monotonic()
    renewing = asyncio.create_task(_renew(account_id, owner))
    try:
        channel = await load_channel(services, account_id, tenant_id=tenant_id)
        if channel is None or channel.info.type != CHANNEL_TYPE:
            raise ChatGuruError("the channel is inactive or not a ChatGuru account")
        adapter = channel.adapter
        assert isinstance(adapter, ChatGuruAdapter)
        client = adapter.client(settings.requests_per_second)
        result = await _poll(
            services,
            channel,
            client,
            tenant_id,
            account_id,
            settings,
            zoneinfo.ZoneInfo(settings.time_zone),
        )
    except Exception as exc:  # the status shows every failure, not only ChatGuru's
        if isinstance(exc, ChatGuruError):
            code, message = exc.code, exc.message
        else:
            log.exception("chatguru poll of account %s failed", account_id)
            code, message = "internal_error", f"{type(exc).__name__}: {exc}"
        await _record_poll(account_id, started, error=f"{code}: {message}")
        return {"error": code, "message": message}
    finally:
        renewing.cancel()
        await _release(account_id, owner)
    await _record_poll(
        account_id, started, error=result["error"], stored=result["stored"], lag_ms=result["lag_ms"]
    )
    return result


async def _record_poll(
    account_id: uuid.UUID,
    started: float,
    *,
    error: str | None,
    stored: int | None = None,
    lag_ms: int | None = None,
) -> None:
    """One poll in the account's status: its time, what it stored (None: it failed before
    storing anything, and the last count stands) and its error, if any."""
    if error is not None:
        metrics.POLL_ERRORS.inc()
    await store.raw(
        "UPDATE chatguru_accounts SET last_poll_ms = {}, "
        "last_poll_messages = coalesce({}, last_poll_messages), "
        "last_lag_ms = coalesce({}, last_lag_ms), last_poll_error = {}, polls = polls + 1, "
        "messages_polled = messages_polled + coalesce({}, 0), "
        "poll_errors = poll_errors + {}, updated_at = now() WHERE id = {}",
        int((time.monotonic() - started) * 1000),
        stored,
        lag_ms,
        error,
        stored,
        int(error is not None),
        account_id,
    )


async def _changed_chats(
    client: ChatGuruClient,
    account_id: uuid.UUID,
    known: dict[str, dict[str, Any]],
    zone: dt.tzinfo,
    odd: Odd,
) -> list[ChatRecord]:
    """The chats the chat list shows changed (most recently updated first), page by page
    until a page without one; `known` gets the stored state of every chat it read."""
    changed: dict[str, ChatRecord] = {}
    count = 0
    for page_num in range(MAX_LIST_PAGES):
        page = await client.chat_page(page_num)
        fresh = 0
        chats: list[ChatRecord] = []
        for item in page.chats:
            chat = parse_chat(item, zone)
            if chat is None:
                odd.add("invalid_chat")
                continue
            chats.append(chat)
        if chats:  # what is stored of this page's chats (into `known`, for the readers)
            known.update(await store.known_chats(account_id, [chat.id for chat in chats]))
        for chat in chats:
            before = known.get(chat.id)
            if (
                before is None
                or chat.updated_at is None  # no way to tell: read it
                or before["upstream_updated_at"] != chat.updated_at
            ):
                fresh += 1
                changed.setdefault(chat.id, chat)
        count += len(page.chats)
        if not page.chats or not fresh or (page.total is not None and count >= page.total):
            break
    return list(changed.values())


@dataclass
class _ChatRead:
    """What one poll read of one chat: its new messages and notes; `overflow` when the
    watermark was not within `MAX_MESSAGE_PAGES` pages (the rest is the catalog's)."""

    chat: ChatRecord
    messages: list[InboundMessage] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    overflow: bool = False


async def _new_in_chat(
    client: ChatGuruClient,
    chat: ChatRecord,
    watermark: str | None,
    zone: dt.tzinfo,
    odd: Odd,
) -> _ChatRead:
    """Messages newer than the watermark (pages newest first, each chronological)."""
    pages: list[list[Any]] = []
    reached = watermark is None
    for page in range(1, (MAX_MESSAGE_PAGES if watermark else 1) + 1):
        items = await client.message_page(chat.id, page)
        if not items:
            reached = True  # the chat's oldest page: nothing older is missing
            break
        pages.append(items)
        if watermark is None or any(_item_id(item) == watermark for item in items):
            reached = True
            break
    messages: list[InboundMessage] = []
    notes: list[Note] = []
    seen: set[str] = set()
    for items in reversed(pages):  # oldest page first: chronological overall
        for item in items:
            parsed = parse_item(item, chat, zone, odd)
            if isinstance(parsed, Note):
                notes.append(parsed)
            elif parsed is not None and parsed.provider_message_id not in seen:
                seen.add(parsed.provider_message_id)
                messages.append(parsed)
    if watermark is not None:
        ids = [message.provider_message_id for message in messages]
        if watermark in ids:
            messages = messages[ids.index(watermark) + 1 :]
    return _ChatRead(chat, messages, notes, overflow=not reached)


def _progress(read: _ChatRead) -> store.ChatProgress:
    """What one poll stored for one chat: its notes, count and newest message, and the
    chat list's `updated` its messages are now stored up to."""
    progress = store.ChatProgress(
        read.chat.id, added=len(read.messages), notes=read.notes, seen=read.chat.updated_at
    )
    if read.messages:
        newest = max(read.messages, key=lambda message: message.timestamp)
        progress.newest_id, progress.newest_at = newest.provider_message_id, newest.timestamp
    return progress


def _item_id(item: Any) -> str | None:
    if isinstance(item, dict) and isinstance(item.get("m"), dict):
        value = item["m"].get("_id")
        return value.get("$oid") if isinstance(value, dict) else value
    return None


async def _poll(
    services: Any,
    channel: Any,
    client: ChatGuruClient,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    settings: ChatGuruSettings,
    zone: dt.tzinfo,
) -> dict[str, Any]:
    odd = Odd()
    known: dict[str, dict[str, Any]] = {}
    changed = await _changed_chats(client, account_id, known, zone, odd)
    if not changed:
        return {
            "chats": 0,
            "stored": 0,
            "duplicates": 0,
            "lag_ms": None,
            "odd": odd.total,
            "failed_chats": 0,
            "error": None,
        }
    # `updated` is recorded as read only with the chat's messages (`record_watermarks`)
    await store.upsert_chats(tenant_id, account_id, changed, dt.datetime.now(dt.UTC), seen=False)
    gate = asyncio.Semaphore(settings.concurrency)

    async def read(chat: ChatRecord) -> _ChatRead:
        async with gate:
            watermark = known.get(chat.id, {}).get("newest_message_id")
            return await _new_in_chat(client, chat, watermark, zone, odd)

    outcomes = await asyncio.gather(*(read(chat) for chat in changed), return_exceptions=True)
    found: list[_ChatRead] = []
    failed: list[tuple[ChatRecord, Exception]] = []
    for chat, outcome in zip(changed, outcomes, strict=True):
        if isinstance(outcome, _ChatRead):
            found.append(outcome)
        elif isinstance(outcome, Exception):
            failed.append((chat, outcome))
        else:
            raise outcome
    pending = [message for each in found for message in each.messages]
    stored = duplicates = 0
    for start in range(0, len(pending), INGEST_BATCH):
        outcome = await ingest_batch(
            services, channel, WebhookBatch(messages=pending[start : start + INGEST_BATCH])
        )
        stored += len(outcome.stored)
        duplicates += outcome.duplicates
    now = dt.datetime.now(dt.UTC)
    lags = [now - m.timestamp for m in pending if now - m.timestamp < LAG_WINDOW]
    await store.record_watermarks(tenant_id, account_id, [_progress(each) for each in found])
    changed_with_messages = [each.chat for each in found if each.messages]
    await map_conversations(tenant_id, account_id, changed_with_messages, set())
    await copy_notes(services, tenant_id, account_id, [each.chat.id for each in found])
    errors = [_failure(chat, exc) for chat, exc in failed]
    overflowed = [each.chat.id for each in found if each.overflow]
    if overflowed:
        errors.append(await _to_catalog(services, tenant_id, account_id, overflowed))
    metrics.POLL_MESSAGES.inc(stored)
    for lag in lags:
        metrics.POLL_LAG.observe(lag.total_seconds())
    for reason, count in odd.reasons.items():
        metrics.ODD_ITEMS.labels(reason).inc(count)
    return {
        "chats": len(changed),
        "stored": stored,
        "duplicates": duplicates,
        "lag_ms": int(max(lags).total_seconds() * 1000) if lags else None,
        "odd": odd.total,
        "failed_chats": len(failed),
        "error": "; ".join(errors) if errors else None,
    }


def _failure(chat: ChatRecord, exc: Exception) -> str:
    """One chat's failed read, for the status (the chat is read again next poll)."""
    if isinstance(exc, ChatGuruError):
        return f"chat {chat.id}: {exc.code}: {exc.message}"
    log.warning("chatguru poll: chat %s failed", chat.id, exc_info=exc)
    return f"chat {chat.id}: internal_error: {type(exc).__name__}: {exc}"


async def _to_catalog(
    services: Any, tenant_id: uuid.UUID, account_id: uuid.UUID, chat_ids: list[str]
) -> str:
    """Chats with more new pages than a poll reads: their catalog checkpoint is reset and
    a catalog job started, which reads them to their oldest page (what it already has is
    a duplicate it skips). Answers what the status should say."""
    await store.reset_checkpoints(tenant_id, account_id, chat_ids)
    what = f"{len(chat_ids)} chat(s) had more than {MAX_MESSAGE_PAGES} new pages"
    try:
        job_id = await catalog.create_job(tenant_id, account_id)
    except ApiError:
        return f"catalog_needed: {what}; a catalog is running: run it again once it ends"
    if services.tasks is not None:
        await services.tasks.kick(f"{PLUGIN}.{catalog.TASK}", str(job_id))
    return f"catalog_started: {what}; catalog job {job_id} reads the rest"
