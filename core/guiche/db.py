"""Database engine lifecycle and facts about the server we run on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import asyncpg
from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

#: Session settings of the pool's connections. `force_custom_plan`: every query is planned
#: for its own parameters, so a page of a 20,000-message conversation does not run a
#: generic plan costed for the average one (bench/README.md, "history"). Statements that
#: want a cached generic plan live in functions that set their own mode
#: (`guiche_ingest_messages`).
POOL_SERVER_SETTINGS: dict[str, str] = {"plan_cache_mode": "force_custom_plan"}


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
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached right now (a refused, dropped
    or timed-out connection, a server restarting, a full server, a closed pool), so the
    request may succeed if retried later; anything else is a real failure."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state.startswith("08") or state in _UNAVAILABLE_SQLSTATES
    if isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed", "pool is closing": the connection went away under us.
        return "closed" in str(exc) or "closing" in str(exc)
    return isinstance(exc, ConnectionError | TimeoutError)


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
