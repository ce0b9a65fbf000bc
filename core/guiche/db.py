"""Database engine lifecycle and facts about the server we run on."""

from __future__ import annotations

from collections.abc import Iterable

from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table


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
