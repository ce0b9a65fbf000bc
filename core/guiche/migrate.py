"""Apply core's and every installed plugin's migrations (Piccolo's runner); idempotent."""

from __future__ import annotations

import os

PICCOLO_CONF = "guiche.piccolo_conf"


class MigrationError(Exception):
    pass


async def migrate(database_url: str) -> str:
    """Run pending migrations for all apps; returns Piccolo's summary message."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["PICCOLO_CONF"] = PICCOLO_CONF
    from piccolo.apps.migrations.commands.forwards import run_forwards
    from piccolo.engine import engine_finder

    engine = engine_finder()
    if engine is None:  # pragma: no cover - piccolo_conf always defines DB
        raise MigrationError("Piccolo engine not found")
    result = await run_forwards(app_name="all")
    if not result.success:
        raise MigrationError(result.message)
    return result.message
