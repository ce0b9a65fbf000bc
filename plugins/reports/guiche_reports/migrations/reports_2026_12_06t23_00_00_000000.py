"""Block kinds keyed by several dimensions (`store.KINDS`: every pair of agent,
department, channel and tabulation, and the four together), so questions on two or more
of them (a supervisor's "own or my departments", two filters) read blocks instead of the
hourly rollups.

The rollups were built without those kinds, and they are now kept by differences (a
stored row's contribution taken out, the new one's added), which needs rollups equal to
the metrics rows: both are emptied, with the frontier and the catch-up cursors, so the
next runs of `reports.catch_up` measure every closed conversation again and build every
kind (a long history spans runs; until then its aggregates and lists are missing, never
wrong)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-06T23:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "reports: day blocks keyed by several dimensions, rollups kept by difference"

UP = """
DELETE FROM reports_conversations;
DELETE FROM reports_blocks;
DELETE FROM reports_hourly;
DELETE FROM reports_frontier;
DELETE FROM reports_cursor;
"""

DOWN = """
DELETE FROM reports_blocks WHERE dim > 5;
"""


async def _run(sql: str) -> None:
    await engine_finder().current_transaction.get().connection.execute(sql)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="reports", description=DESCRIPTION)

    async def apply() -> None:
        await _run(UP)

    async def revert() -> None:
        await _run(DOWN)

    manager.add_raw(apply)
    manager.add_raw_backwards(revert)
    return manager
