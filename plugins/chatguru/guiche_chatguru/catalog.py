"""The full-history catalog: every chat, every message page, into core's bulk path.

A job (`chatguru_catalog_jobs`) runs as the task `chatguru.catalog`. It lists every chat
(the chat list page by page, then archived chats), stores them, then walks the chats
not yet done with `concurrency` readers: each reads its chat's message pages from the
newest (page 1) until an empty page and hands every page to the job's one writer, which
stores pages of many chats together: one `guiche.plugin.history_import` session per job,
one call per `FLUSH_MESSAGES` messages (a catalog of many small chats is not one import
per chat).

Resumable: once a batch is committed, each of its chats' checkpoint (`catalog_page`,
the pages whose messages are committed) moves, and a finished chat is `catalog_done`.
A killed worker's job is taken over once its heartbeat is older than `STALE_AFTER` (the task is
redelivered, or started again) and resumes at each chat's checkpoint; since new
messages only push older ones to higher pages, nothing is skipped, and what is read
twice is a duplicate `import_history` skips. One odd item is counted, never fatal; a
chat that fails is counted and left for the next run; bad credentials or an unreachable
panel fail the job with that error.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from guiche.channels import ImportOutcome, InboundMessage
from guiche.plugin import (
    Conflict,
    HistoryImport,
    NotFound,
    history_import,
    load_channel,
    publish_event,
    tenant_plugin_context,
)
from guiche_chatguru import metrics, store
from guiche_chatguru.adapter import CHANNEL_TYPE, ChatGuruAdapter
from guiche_chatguru.client import (
    ChatGuruClient,
    ChatGuruError,
    ChatGuruShapeError,
)
from guiche_chatguru.config import ChatGuruSettings
from guiche_chatguru.mapping import copy_notes
from guiche_chatguru.parse import ChatRecord, Note, Odd, parse_chat, parse_item

log = logging.getLogger("guiche.plugin.chatguru")

PLUGIN = "chatguru"
TASK = "catalog"
PROGRESS_EVENT = "chatguru.catalog"
#: Messages per writer batch: one `import_history` call and one bookkeeping statement.
FLUSH_MESSAGES = 10_000
#: A writer batch waits this long for more pages before storing what it has.
GATHER_SECONDS = 0.2
#: Pages read ahead of the writer (the readers wait beyond that).
QUEUE_PIECES = 512
STALE_AFTER = dt.timedelta(seconds=60)
HEARTBEAT_SECONDS = 10.0
PROGRESS_EVERY = 1.0
#: A safety stop for a panel that never answers an empty page.
MAX_PAGES = 100_000


class CatalogCancelled(Exception):
    pass


# --- listing chats ---------------------------------------------------------------------


async def list_chats(
    client: ChatGuruClient, zone: dt.tzinfo, odd: Odd, *, archived_pass: bool = True
) -> list[ChatRecord]:
    """Every chat: the chat list page by page until an empty page (or the running count
    reaches `total_chats`), then the archived ones; deduplicated by id."""
    seen: dict[str, ChatRecord] = {}
    for archived in (False, True) if archived_pass else (False,):
        count = 0
        for page_num in range(MAX_PAGES):
            page = await client.chat_page(page_num, archived=archived)
            if not page.chats:
                break
            for item in page.chats:
                chat = parse_chat(item, zone)
                if chat is None:
                    odd.add("invalid_chat")
                    continue
                seen.setdefault(chat.id, chat)
            count += len(page.chats)
            if page.total is not None and count >= page.total:
                break
    return list(seen.values())


# --- jobs ------------------------------------------------------------------------------


_JOB_COLUMNS = (
    "id, tenant, account, state, chats_total, chats_done, messages, inserted, duplicates, "
    "notes, odd, errors, error, error_code, cancel_requested, created_at, started_at, "
    "heartbeat_at, finished_at"
)


async def job_row(tenant_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, Any] | None:
    rows = await store.raw(
        f"SELECT {_JOB_COLUMNS} FROM chatguru_catalog_jobs WHERE tenant = {{}} AND id = {{}}",
        tenant_id,
        job_id,
    )
    return rows[0] if rows else None


def job_view(row: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """A job as the API shows it, with rows/s and an ETA from its counters."""
    now = now or dt.datetime.now(dt.UTC)
    started, finished = row["started_at"], row["finished_at"]
    elapsed = ((finished or now) - started).total_seconds() if started else 0.0
    rows = row["inserted"] + row["duplicates"]
    rate = rows / elapsed if elapsed > 0 else 0.0
    eta = None
    if row["state"] == "running" and row["chats_done"] and row["chats_total"]:
        per_chat = elapsed / row["chats_done"]
        eta = round(per_chat * (row["chats_total"] - row["chats_done"]), 1)
    return {
        "id": row["id"],
        "channel_id": row["account"],
        "state": row["state"],
        "chats_total": row["chats_total"],
        "chats_done": row["chats_done"],
        "messages": row["messages"],
        "inserted": row["inserted"],
        "duplicates": row["duplicates"],
        "notes": row["notes"],
        "odd": row["odd"],
        "errors": row["errors"],
        "error": {"code": row["error_code"], "message": row["error"]} if row["error"] else None,
        "cancel_requested": row["cancel_requested"],
        "rows_per_second": round(rate, 1),
        "elapsed_seconds": round(elapsed, 1),
        "eta_seconds": eta,
        "created_at": row["created_at"],
        "started_at": started,
        "finished_at": finished,
    }


async def create_job(tenant_id: uuid.UUID, channel_id: uuid.UUID) -> uuid.UUID:
    """A queued job for the account; 409 while another one is alive (a running job whose
    worker stopped beating is taken over instead, by the new job)."""
    await store.ensure_account(tenant_id, channel_id)
    job_id = uuid.uuid4()
    async with store.transaction():
        await store.raw(
            "UPDATE chatguru_catalog_jobs SET state = 'failed', finished_at = now(), "
            "error = 'the worker running it stopped', error_code = 'worker_lost' "
            "WHERE account = {} AND tenant = {} AND state = 'running' "
            "AND heartbeat_at < now() - {}::interval",
            channel_id,
            tenant_id,
            STALE_AFTER,
        )
        rows = await store.raw(
            "INSERT INTO chatguru_catalog_jobs (id, tenant, account) VALUES ({}, {}, {}) "
            "ON CONFLICT (account) WHERE state IN ('queued', 'running') DO NOTHING RETURNING id",
            job_id,
            tenant_id,
            channel_id,
        )
    if not rows:
        raise Conflict("A catalog of this account is already running", code="catalog_running")
    return job_id


_ENDS_AT_ONCE = (
    "(state = 'queued' OR (state = 'running' AND heartbeat_at < now() - {}::interval))"
)


async def cancel_job(tenant_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, Any]:
    """Ask a running job to stop at its next page; a queued job, or a running one whose
    worker stopped beating (nobody would read the request), is cancelled at once."""
    rows = await store.raw(
        "UPDATE chatguru_catalog_jobs SET cancel_requested = true, "
        f"state = CASE WHEN {_ENDS_AT_ONCE} THEN 'cancelled' ELSE state END, "
        f"finished_at = CASE WHEN {_ENDS_AT_ONCE} THEN now() ELSE finished_at END "
        "WHERE tenant = {} AND id = {} RETURNING id",
        STALE_AFTER,
        STALE_AFTER,
        tenant_id,
        job_id,
    )
    if not rows:
        raise NotFound("No such catalog job", code="catalog_job_not_found")
    row = await job_row(tenant_id, job_id)
    assert row is not None
    return job_view(row)


async def _claim(job_id: uuid.UUID) -> dict[str, Any] | None:
    rows = await store.raw(
        "UPDATE chatguru_catalog_jobs SET state = 'running', heartbeat_at = now(), "
        "started_at = coalesce(started_at, now()) WHERE id = {} AND NOT cancel_requested "
        "AND (state = 'queued' OR (state = 'running' AND heartbeat_at < now() - {}::interval)) "
        "RETURNING tenant, account",
        job_id,
        STALE_AFTER,
    )
    return rows[0] if rows else None


async def _finish(job_id: uuid.UUID, state: str, error: ChatGuruError | str | None = None) -> None:
    code, message = None, None
    if isinstance(error, ChatGuruError):
        code, message = error.code, error.message
    elif error:
        code, message = "catalog_failed", error
    await store.raw(
        "UPDATE chatguru_catalog_jobs SET state = {}, finished_at = now(), heartbeat_at = now(), "
        "error = {}, error_code = {} WHERE id = {}",
        state,
        message,
        code,
        job_id,
    )


# --- running ---------------------------------------------------------------------------


@dataclass
class _Run:
    """One worker's run of a job: its counters, flushed to the job row per chat."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    account_id: uuid.UUID
    services: Any
    channel: Any
    client: ChatGuruClient
    zone: dt.tzinfo
    odd: Odd = field(default_factory=Odd)
    cancelled_at: float = 0.0
    last_check: float = 0.0
    last_progress: float = 0.0

    async def check_cancel(self) -> None:
        now = time.monotonic()
        if now - self.last_check < 0.5:
            return
        self.last_check = now
        rows = await store.raw(
            "SELECT cancel_requested FROM chatguru_catalog_jobs WHERE id = {}", self.job_id
        )
        if not rows or rows[0]["cancel_requested"]:
            raise CatalogCancelled

    async def add(self, **counts: int) -> None:
        sets = ", ".join(f"{name} = {name} + {{}}" for name in counts)
        await store.raw(
            f"UPDATE chatguru_catalog_jobs SET {sets}, heartbeat_at = now() WHERE id = {{}}",
            *counts.values(),
            self.job_id,
        )

    async def progress(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < PROGRESS_EVERY:
            return
        self.last_progress = now
        row = await job_row(self.tenant_id, self.job_id)
        if row is None:
            return
        view = job_view(row)
        metrics.CATALOG_RATE.set(view["rows_per_second"])
        data = {k: str(v) if isinstance(v, uuid.UUID | dt.datetime) else v for k, v in view.items()}
        with contextlib.suppress(Exception):  # progress is best effort, the job goes on
            await publish_event(self.services, self.tenant_id, PROGRESS_EVENT, data)

    async def chat(self, chat: ChatRecord, writer: _Writer, checkpoint: int) -> None:
        """Read one chat from its checkpoint (the last page committed) to its oldest page;
        each page goes to the writer, which commits it and then moves the checkpoint."""
        seen: set[str] = set()
        page = checkpoint
        for page in range(checkpoint + 1, MAX_PAGES):
            await self.check_cancel()
            items = await self.client.message_page(chat.id, page)
            if not items:
                break
            odd = Odd()
            piece = _Piece(chat, page)
            for item in items:
                parsed = parse_item(item, chat, self.zone, odd)
                if isinstance(parsed, Note):
                    piece.notes.append(parsed)
                elif parsed is not None and parsed.provider_message_id not in seen:
                    seen.add(parsed.provider_message_id)  # pages overlap
                    piece.messages.append(parsed)
            piece.odd = odd.total
            for reason, count in odd.reasons.items():
                self.odd.reasons[reason] = self.odd.reasons.get(reason, 0) + count
            await writer.put(piece)
        else:  # pragma: no cover - MAX_PAGES pages without an empty one
            log.warning("chatguru: chat %s has more than %d pages", chat.id, MAX_PAGES)
        await writer.put(_Piece(chat, page - 1, done=True))


@dataclass
class _Piece:
    """One page of one chat on its way to the database (or, `done`, the chat's end)."""

    chat: ChatRecord
    page: int
    done: bool = False
    messages: list[InboundMessage] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    odd: int = 0


class _Writer:
    """The one writer of a job: pages from every chat reader are gathered into batches
    of about `FLUSH_MESSAGES` (or whatever came within `GATHER_SECONDS`) and stored with
    one call of the job's import session; only then do their chats' checkpoints move,
    with one statement per batch (`store.record_batch`), while the next batch is
    gathered and imported. Readers wait when it is `QUEUE_PIECES` pages behind."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.queue: asyncio.Queue[_Piece | None] = asyncio.Queue(maxsize=QUEUE_PIECES)
        self.mapped: set[str] = set()

    async def put(self, piece: _Piece) -> None:
        await self.queue.put(piece)

    async def close(self) -> None:
        await self.queue.put(None)

    async def serve(self) -> None:
        # One import session for the job. Two batches in flight: while batch N is
        # written, N+1 is gathered and prepared (rows, senders, keys); each batch's
        # bookkeeping waits for the one before it, so checkpoints only move forward.
        run = self.run
        async with history_import(run.services, run.channel) as session:
            pending: list[asyncio.Task[None]] = []
            closed = False
            try:
                while not closed:
                    batch, closed = await self.gather()
                    if not batch:
                        continue
                    previous = pending[-1] if pending else None
                    pending.append(asyncio.create_task(self.commit(session, batch, previous)))
                    if len(pending) >= 2:
                        await pending.pop(0)
                while pending:
                    await pending.pop(0)
            finally:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def gather(self) -> tuple[list[_Piece], bool]:
        """About `FLUSH_MESSAGES` messages' pages, or what came within `GATHER_SECONDS`
        of the first; and whether the readers are all done."""
        batch: list[_Piece] = []
        count = 0
        while count < FLUSH_MESSAGES:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
                # TaskGroup's cancellation when a piece arrives at that moment, and the
                # writer would then serve forever (a cancelled job hung).
                async with asyncio.timeout(GATHER_SECONDS):
                    piece = await self.queue.get()
            except TimeoutError:
                if batch:
                    break
                continue
            if piece is None:
                return batch, True
            batch.append(piece)
            count += len(piece.messages)
        return batch, False

    async def commit(
        self, session: HistoryImport, batch: list[_Piece], previous: asyncio.Task[None] | None
    ) -> None:
        """The batch's messages, committed (a re-run skips what is already stored), then
        its bookkeeping, after the previous batch's."""
        messages = [m for piece in batch for m in piece.messages]
        outcome = await session.add(messages) if messages else ImportOutcome()
        metrics.CATALOG_MESSAGES.labels("inserted").inc(outcome.inserted)
        metrics.CATALOG_MESSAGES.labels("duplicate").inc(outcome.duplicates)
        if previous is not None:
            await previous
        await self.record(batch, outcome)

    async def record(self, batch: list[_Piece], outcome: ImportOutcome) -> None:
        """What the committed batch did to its chats and to the job, in one statement;
        then the panel's notes of chats that got notes or a conversation now."""
        run = self.run
        chats: dict[str, store.ChatProgress] = {}
        for piece in batch:
            chat = chats.get(piece.chat.id)
            if chat is None:
                chat = chats[piece.chat.id] = store.ChatProgress(piece.chat.id)
            chat.page = max(chat.page, piece.page, 0)
            chat.done = chat.done or piece.done
            chat.added += len(piece.messages)
            chat.notes.extend(piece.notes)
            for message in piece.messages:
                if chat.newest_at is None or message.timestamp >= chat.newest_at:
                    chat.newest_id, chat.newest_at = message.provider_message_id, message.timestamp
            if piece.messages and piece.chat.id not in self.mapped:
                chat.conversation = outcome.conversations.get(
                    piece.messages[0].provider_message_id
                )
        await store.record_batch(
            run.tenant_id,
            run.account_id,
            run.job_id,
            list(chats.values()),
            messages=sum(chat.added for chat in chats.values()),
            inserted=outcome.inserted,
            duplicates=outcome.duplicates,
            odd=sum(piece.odd for piece in batch),
        )
        mapped = {chat.chat_id for chat in chats.values() if chat.conversation is not None}
        self.mapped.update(mapped)
        metrics.CATALOG_CHATS.inc(sum(chat.done for chat in chats.values()))
        # notes met before their chat had a conversation come along once it has one
        with_notes = [chat.chat_id for chat in chats.values() if chat.notes]
        await copy_notes(run.services, run.tenant_id, run.account_id, [*with_notes, *mapped])
        await run.progress()


async def run_catalog(job_id: str, services: Any) -> None:
    """The task `chatguru.catalog`: run (or take over) one job. Idempotent: a job that is
    done, cancelled or alive elsewhere is left alone."""
    job = uuid.UUID(job_id)
    claimed = await _claim(job)
    if claimed is None:
        return
    tenant_id, account_id = claimed["tenant"], claimed["account"]
    ctx = await tenant_plugin_context(services, tenant_id, PLUGIN)
    channel = await load_channel(services, account_id, tenant_id=tenant_id)
    if ctx is None or channel is None or channel.info.type != CHANNEL_TYPE:
        await _finish(job, "failed", "the channel is inactive or the plugin is disabled")
        return
    settings: ChatGuruSettings = ctx.settings
    adapter = channel.adapter
    assert isinstance(adapter, ChatGuruAdapter)
    run = _Run(
        job,
        tenant_id,
        account_id,
        services,
        channel,
        adapter.client(settings.requests_per_second),
        zoneinfo.ZoneInfo(settings.time_zone),
    )
    beating = asyncio.create_task(_heartbeat(job))
    try:
        await _walk(run, settings.concurrency)
    except CatalogCancelled:
        await _finish(job, "cancelled")
    except ChatGuruError as exc:
        metrics.CATALOG_ERRORS.labels("job").inc()
        log.warning("chatguru catalog %s failed: %s", job, exc.message)
        await _finish(job, "failed", exc)
    except Exception as exc:
        metrics.CATALOG_ERRORS.labels("job").inc()
        log.exception("chatguru catalog %s failed", job)
        await _finish(job, "failed", f"{type(exc).__name__}: {exc}")
    else:
        await _finish(job, "done")
    finally:
        beating.cancel()
        for reason, count in run.odd.reasons.items():
            metrics.ODD_ITEMS.labels(reason).inc(count)
        if run.odd.total:
            log.warning("chatguru catalog %s skipped odd items: %s", job, run.odd.reasons)
    await run.progress(force=True)


async def _walk(run: _Run, concurrency: int) -> None:
    chats = await list_chats(run.client, run.zone, run.odd)
    now = dt.datetime.now(dt.UTC)
    await store.upsert_chats(run.tenant_id, run.account_id, chats, now)
    known = await store.known_chats(run.account_id)  # checkpoints: no query per chat
    todo = [chat for chat in chats if not known[chat.id]["catalog_done"]]
    await store.raw(
        "UPDATE chatguru_catalog_jobs SET chats_total = {}, chats_done = {} WHERE id = {}",
        len(chats),
        len(chats) - len(todo),
        run.job_id,
    )
    await run.progress(force=True)
    queue: asyncio.Queue[ChatRecord] = asyncio.Queue()
    for chat in todo:
        queue.put_nowait(chat)
    writer = _Writer(run)

    async def reader() -> None:
        while True:
            try:
                chat = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await run.chat(chat, writer, known[chat.id]["catalog_page"])
            except (ChatGuruShapeError, ValueError) as exc:  # this chat only
                metrics.CATALOG_ERRORS.labels("chat").inc()
                log.warning("chatguru catalog: chat %s failed: %s", chat.id, exc)
                await run.add(errors=1)

    async def readers() -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(concurrency, len(todo)))):
                group.create_task(reader())
        await writer.close()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(readers())
            group.create_task(writer.serve())
    except BaseExceptionGroup as failed:
        raise unwrap_group(failed) from None


async def _heartbeat(job_id: uuid.UUID) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        with contextlib.suppress(Exception):
            await store.raw(
                "UPDATE chatguru_catalog_jobs SET heartbeat_at = now() WHERE id = {}", job_id
            )


def unwrap_group(exc: BaseException) -> BaseException:
    """The first real error inside a TaskGroup's ExceptionGroup."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
