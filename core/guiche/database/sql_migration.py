"""Migrations written as SQL, on Piccolo's runner (its bookkeeping, ordering, transactions).

Core's schema needs what auto-migrations cannot express (composite keys on the
time-partitioned `messages`, partial unique indexes, optional extensions), so most
migration files are just SQL up and SQL down; this builds their `forwards()`.
Plugins with tables may use it too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder


async def execute_in_migration(sql: str) -> None:
    """Run SQL on the connection of the migration's own transaction."""
    await engine_finder().current_transaction.get().connection.execute(sql)


async def try_in_migration(sql: str) -> bool:
    """Run optional DDL (an extension may be missing) in a savepoint: False if it failed,
    and the migration goes on."""
    transaction = engine_finder().current_transaction.get()
    savepoint = await transaction.savepoint()
    try:
        await transaction.connection.execute(sql)
    except Exception:
        await savepoint.rollback_to()
        return False
    await savepoint.release()
    return True


def sql_migration(
    migration_id: str, description: str, up: str, down: str, *, app_name: str = "guiche"
) -> Callable[[], Awaitable[MigrationManager]]:
    """A migration module's `forwards` that applies `up` (and `down` when rolled back)."""

    async def forwards() -> MigrationManager:
        manager = MigrationManager(
            migration_id=migration_id, app_name=app_name, description=description
        )

        async def apply() -> None:
            await execute_in_migration(up)

        async def revert() -> None:
            await execute_in_migration(down)

        manager.add_raw(apply)
        manager.add_raw_backwards(revert)
        return manager

    return forwards
