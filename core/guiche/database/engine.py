"""Database engine lifecycle and facts about the server we run on."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

log = logging.getLogger("guiche.database.engine")

T = TypeVar("T")


async def retry_disconnects(
    operation: Callable[[], Awaitable[T]],
    *,
    deadline: float,
    what: str,
    first_delay: float = 0.05,
    max_delay: float = 2.0,
) -> T:
    """Run `operation`, again after a jittered backoff while the database is away.

    For writes that must not be dropped on a blip (settling a send the provider already
    accepted). `deadline` is on the event loop's clock; past it the last error is
    raised. `operation` must be safe to repeat: its transaction either committed (the
    repeat finds nothing to do) or did not.
    """
    loop = asyncio.get_running_loop()
    delay = first_delay
    failures = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            failures += 1
            wait = min(delay, max_delay) * (0.5 + random.random() / 2)
            if loop.time() + wait > deadline:
                log.error(
                    "database still away, giving up",
                    extra={"what": what, "failures": failures, "error": repr(exc)},
                )
                raise
            log.warning(
                "database away, retrying",
                extra={"what": what, "failures": failures, "error": repr(exc)},
            )
            await asyncio.sleep(wait)
            delay *= 2


#: Session settings of the pool's connections. `force_custom_plan`: every query is planned
#: for its own parameters, so a page of a 20,000-message conversation does not run a
#: generic plan costed for the average one (bench/README.md, "history"). Statements that
#: want a cached generic plan live in functions that set their own mode
#: (`guiche_ingest_messages`).
POOL_SERVER_SETTINGS: dict[str, str] = {"plan_cache_mode": "force_custom_plan"}

#: For a transaction that writes many rows into tables with foreign keys (a bulk import):
#: Postgres checks each row's foreign keys with cached plans of its own, and under the
#: pool's `force_custom_plan` it plans every one of those checks again, for every row
#: (four keys on `messages`: most of a COPY's time went into the planner). `auto` lets
#: those checks keep their generic plan (a primary-key lookup: nothing to tune per
#: value). Transaction-scoped: the connection goes back to the pool as it came.
GENERIC_PLANS = "SET LOCAL plan_cache_mode = auto"


async def use_generic_plans(conn: Any) -> None:
    """`GENERIC_PLANS` for the rest of `conn`'s open transaction (public to plugins as
    `guiche.plugin.use_generic_plans`, for their own bulk writes). Refused outside a
    transaction, where Postgres would only warn and change nothing."""
    if not conn.is_in_transaction():
        raise RuntimeError("use_generic_plans() needs an open transaction on the connection")
    await conn.execute(GENERIC_PLANS)


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection given back to the pool without asyncpg's reset query.

    asyncpg sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    at every release: one more round trip per unit of work, which on a small host costs
    as much as the work's own statement. Guichê keeps no session state on pooled
    connections: advisory locks are transaction-scoped (`pg_advisory_xact_lock`),
    cursors live inside transactions, nothing LISTENs (events go through Redis) and
    settings are per connection (`server_settings`) or `SET LOCAL`. An open transaction
    is still rolled back on release (asyncpg does that whatever this returns). Code
    that changes session state on a pooled connection must undo it itself.
    """

    def get_reset_query(self) -> str:
        return ""


#: SQLSTATEs that say the server is away for now, not that the statement is wrong: shutting
#: down (57P01, 57P02), starting up or in recovery (57P03), out of connection slots (53300).
#: Class 08 (connection exceptions) is matched as a whole.
#: Server shutting down, crashed, starting up, or out of connection slots.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached right now (a refused, dropped
    or timed-out connection, a server restarting, a full server, a closed pool), so the
    work may succeed if retried later; anything else is a real failure. The one test of
    "the database went away" (the middleware's 503, the sender's settle retries)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state.startswith("08") or state in _UNAVAILABLE_SQLSTATES
    if isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed", "pool is closing": the connection went away under us.
        return "closed" in str(exc) or "closing" in str(exc)
    if isinstance(exc, asyncpg.InternalClientError):
        # "cannot switch to state N; another operation (2) is in progress": a pooled
        # connection read the server's FATAL (a restart) but not yet its end of stream.
        return "cannot switch to state" in str(exc)
    return isinstance(exc, OSError)  # refused, reset, timed out (TimeoutError is one)


async def start_pool_waiting(
    engine: PostgresEngine, *, wait_seconds: float, **pool_options: Any
) -> None:
    """Open the engine's pool, waiting up to `wait_seconds` for a database that is
    starting, restarting or briefly unreachable (a worker replaced during a database
    restart, or a container started before Postgres) instead of exiting at once. Other
    errors (a wrong password, a missing database) raise immediately."""
    loop = asyncio.get_running_loop()
    await retry_disconnects(
        lambda: engine.start_connection_pool(**pool_options),
        deadline=loop.time() + wait_seconds,
        what="opening the connection pool",
        first_delay=0.2,
        max_delay=5.0,
    )


def make_engine(database_url: str) -> PostgresEngine:
    return PostgresEngine(
        config={"dsn": database_url, "connection_class": PooledConnection}, log_queries=False
    )


@asynccontextmanager
async def connection(engine: PostgresEngine) -> AsyncIterator[asyncpg.Connection]:
    """One connection for a unit of work that runs several transactions in a row (a
    webhook's ingest, then its routing), instead of a pool round trip for each.

    Inside a Piccolo transaction it is that transaction's connection (what
    `engine.transaction()` would join); else one from the pool, or a new one without.
    """
    current = engine.current_transaction.get()
    if current is not None:
        yield current.connection
    elif engine.pool is not None:
        async with engine.pool.acquire() as conn:
            yield conn
    else:
        conn = await engine.get_new_connection()
        try:
            yield conn
        finally:
            await conn.close()


def bind_tables(engine: PostgresEngine, tables: Iterable[type[Table]]) -> None:
    """Point Piccolo tables at this engine (instead of piccolo_conf's) for the app's life."""
    for table in tables:
        table._meta.db = engine


async def storage_flavor(engine: PostgresEngine) -> str:
    """'timescaledb' when `messages` is a hypertable, else 'postgres' (plain table)."""
    rows = await engine._run_in_new_connection(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
    )
    if not rows:
        return "postgres"
    rows = await engine._run_in_new_connection(
        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'messages'"
    )
    return "timescaledb" if rows else "postgres"


#: Transaction rollbacks the server asks us to retry (class 40: serialization failure,
#: deadlock, ...) and a lock wait cut short: the same work can succeed on a second try.
_RETRYABLE_CLASS = "40"
_RETRYABLE_STATES = frozenset({"55P03"})  # lock_not_available
#: Attempts of one unit of work before its error is raised (then answered 5xx).
RETRY_ATTEMPTS = 5
RETRY_BASE_SECONDS = 0.02

log = logging.getLogger("guiche.database.engine")


def is_retryable(exc: BaseException) -> bool:
    """A database error after which the whole transaction may simply be run again."""
    state = getattr(exc, "sqlstate", None)
    return (
        isinstance(exc, asyncpg.PostgresError)
        and isinstance(state, str)
        and (state.startswith(_RETRYABLE_CLASS) or state in _RETRYABLE_STATES)
    )


async def retrying(
    work: Callable[[], Awaitable[T]], *, what: str, attempts: int = RETRY_ATTEMPTS
) -> T:
    """Run `work` (one whole transaction, redone from its start) until it does not fail
    for a retryable reason, at most `attempts` times, with a short jittered pause.

    `work` must be safe to run again after a rollback: everything it wrote is gone,
    and state it keeps outside the database must be reset by itself.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except asyncpg.PostgresError as exc:
            if attempt == attempts or not is_retryable(exc):
                raise
            log.warning(
                "%s: retrying after %s (%s), attempt %d of %d",
                what,
                type(exc).__name__,
                exc.sqlstate,
                attempt + 1,
                attempts,
                extra={"sqlstate": exc.sqlstate, "attempt": attempt + 1},
            )
            await asyncio.sleep(random.uniform(0, RETRY_BASE_SECONDS * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover
