"""The per-channel log of provider calls: what an operator reads first when a channel
misbehaves (time, operation, HTTP status, latency, error).

Every request made through the process's outbound client (`services.http`, which every
adapter receives) is observed by `CallRecorder.observe`, which knows the channel from a
context variable: core sets it around each adapter call it makes (`provider_call`, e.g.
"send" or "fetch_media"), and a plugin's own routes set it the same way through
`guiche.plugin.provider_call`. Requests outside any scope (core's own, or a plugin's
work that is not about one channel) are not logged.

Recording must never slow or break a send: `observe` appends to a bounded buffer in
memory, and one background task writes the buffer in a single statement every second
(or sooner when it fills). A full buffer drops the oldest entries and counts them; a
failed write is logged and the batch dropped. The `core.purge_provider_calls` task keeps
`provider_call_retention_days`. URLs are stored without their query and with
token-shaped path segments masked (Telegram-style `bot<token>` paths, keys in paths).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import re
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from guiche.database.engine import connection

if TYPE_CHECKING:
    from piccolo.engine.postgres import PostgresEngine

log = logging.getLogger("guiche.provider_calls")

ERROR_TEXT_MAX = 500
"""Characters of an error answer's body (or an exception's text) that are kept."""
FLUSH_INTERVAL_SECONDS = 1.0
BUFFER_SIZE = 20_000


@dataclass(frozen=True, slots=True)
class CallScope:
    """Which channel (and which of its operations) the requests made now belong to."""

    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    operation: str


@dataclass(frozen=True, slots=True)
class ProviderCallRecord:
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    created_at: dt.datetime
    operation: str
    method: str
    target: str
    status: int | None
    latency_ms: float
    error: str | None


_scope: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar(
    "guiche_provider_call", default=None
)


@contextmanager
def provider_call(tenant_id: uuid.UUID, channel_id: uuid.UUID, operation: str) -> Iterator[None]:
    """Requests made inside the block are logged as `operation` of this channel."""
    token = _scope.set(CallScope(tenant_id, channel_id, operation))
    try:
        yield
    finally:
        _scope.reset(token)


def current_scope() -> CallScope | None:
    return _scope.get()


_TOKENISH = re.compile(r"^(bot)?(?=[^/]*\d)(?=[^/]*[A-Za-z])[A-Za-z0-9_\-:.=]{24,}$")
_BOT_TOKEN = re.compile(r"^bot\d+:.+$")  # Telegram-style: the bot's token in the path
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def redacted_target(url: httpx.URL) -> str:
    """`host/path` without the query, with segments that look like secrets masked (a
    UUID or an all-digit id stays: those are what an operator matches against)."""
    segments = []
    for segment in url.path.split("/"):
        if _BOT_TOKEN.match(segment):
            segment = "bot***"
        elif _TOKENISH.match(segment) and not _UUID.match(segment):
            segment = "bot***" if segment.startswith("bot") else "***"
        segments.append(segment)
    return f"{url.host}{'/'.join(segments)}"


class CallRecorder:
    """Buffers observed calls and writes them in batches (one per process)."""

    def __init__(self, db: PostgresEngine, *, buffer_size: int = BUFFER_SIZE) -> None:
        self.db = db
        self._buffer: deque[ProviderCallRecord] = deque(maxlen=buffer_size)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0

    def observe(
        self,
        request: httpx.Request,
        *,
        started: dt.datetime,
        elapsed: float,
        response: httpx.Response | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Note one finished request (its response or the exception it raised)."""
        scope = _scope.get()
        if scope is None:
            return
        status = response.status_code if response is not None else None
        text: str | None = None
        if error is not None:
            text = f"{type(error).__name__}: {error}".strip().rstrip(":")
        elif response is not None and status is not None and status >= 400:
            text = _error_body(response)
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(
            ProviderCallRecord(
                tenant_id=scope.tenant_id,
                channel_id=scope.channel_id,
                created_at=started,
                operation=scope.operation,
                method=request.method,
                target=redacted_target(request.url),
                status=status,
                latency_ms=round(elapsed * 1000, 3),
                error=text[:ERROR_TEXT_MAX] if text else None,
            )
        )
        if len(self._buffer) >= 500:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="provider-call-log")

    async def stop(self) -> None:
        """Stop the writer and write what is still buffered."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> int:
        """Write everything buffered now in one statement; the number of rows written."""
        if not self._buffer:
            return 0
        batch = list(self._buffer)
        self._buffer.clear()
        if self.dropped:
            log.warning("provider call log buffer overflowed", extra={"dropped": self.dropped})
            self.dropped = 0
        try:
            async with connection(self.db) as conn:
                await conn.execute(_INSERT, *columns_of(batch))
        except Exception:  # the log is best effort: never the reason a send fails
            log.exception("provider call log write failed", extra={"rows": len(batch)})
            return 0
        self.written += len(batch)
        return len(batch)


def _error_body(response: httpx.Response) -> str | None:
    """The start of an error answer's body when it was read (streams are left alone)."""
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return f"HTTP {response.status_code}"
    body = content[: ERROR_TEXT_MAX * 4].decode("utf-8", errors="replace").strip()
    return body or f"HTTP {response.status_code}"


_INSERT = """
INSERT INTO provider_calls
  (tenant, channel, created_at, operation, method, target, status, latency_ms, error)
SELECT call.* FROM unnest(
  $1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
  $7::integer[], $8::double precision[], $9::text[]
) AS call (tenant, channel, created_at, operation, method, target, status, latency_ms, error)
-- a channel not stored yet (provisioning before the insert) or gone leaves no row
JOIN channels ON channels.id = call.channel AND channels.tenant = call.tenant
"""


def columns_of(batch: list[ProviderCallRecord]) -> list[list[Any]]:
    """The batch as one array per column, in `_INSERT`'s order."""
    return [
        [r.tenant_id for r in batch],
        [r.channel_id for r in batch],
        [r.created_at for r in batch],
        [r.operation for r in batch],
        [r.method for r in batch],
        [r.target for r in batch],
        [r.status for r in batch],
        [r.latency_ms for r in batch],
        [r.error for r in batch],
    ]
