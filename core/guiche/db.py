"""Database engine lifecycle and facts about the server we run on."""

from __future__ import annotations

from collections.abc import Iterable

from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

POOL_SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}
"""Plan every execution for its own parameters. asyncpg keeps statements prepared, and
after five runs Postgres may switch to one generic plan costed for the *average*
conversation: for a 20,000-message one that is a scan of all of it plus a sort (50 ms
instead of 1). Planning each time costs a fraction of a millisecond (bench/README.md)."""


def make_engine(database_url: str) -> PostgresEngine:
    return PostgresEngine(config={"dsn": database_url}, log_queries=False)


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
