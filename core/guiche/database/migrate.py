"""Apply core's and every installed plugin's migrations (Piccolo's runner); idempotent.

Piccolo's own runner prints a banner per app and counts that contradict each other
("8 already complete", then "8 not yet run"), so we drive its pieces (migration
modules, the `migration` bookkeeping table, each migration's manager) ourselves and
report one `AppliedMigration` per migration actually run.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass

PICCOLO_CONF = "guiche.piccolo_conf"


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class AppliedMigration:
    """One migration this call ran: its app, its id and the description it declares."""

    app: str
    id: str
    description: str

    def __str__(self) -> str:
        about = f": {self.description}" if self.description else ""
        return f"Migration {self.app} {self.id} applied{about}"


async def migrate(
    database_url: str, on_applied: Callable[[AppliedMigration], None] | None = None
) -> list[AppliedMigration]:
    """Run pending migrations of every app, in dependency order; return the ones that ran.

    `on_applied` hears of each as soon as it is recorded (progress for a long upgrade).
    """
    os.environ["DATABASE_URL"] = database_url
    os.environ["PICCOLO_CONF"] = PICCOLO_CONF
    from piccolo.apps.migrations.auto.migration_manager import MigrationManager
    from piccolo.apps.migrations.commands.base import BaseMigrationManager
    from piccolo.apps.migrations.tables import Migration
    from piccolo.engine import engine_finder

    if engine_finder() is None:  # pragma: no cover - piccolo_conf always defines DB
        raise MigrationError("Piccolo engine not found")
    finder = BaseMigrationManager()
    await finder.create_migration_table()
    applied: list[AppliedMigration] = []
    for app_name in finder.get_sorted_app_names():
        app = finder.get_app_config(app_name)
        modules = finder.get_migration_modules(app.resolved_migrations_folder_path)
        done = set(await Migration.get_migrations_which_ran(app_name=app_name))
        for migration_id in finder.get_migration_ids(modules):
            if migration_id in done:
                continue
            module = modules[migration_id]
            manager = await module.forwards()
            if isinstance(manager, MigrationManager):
                with contextlib.redirect_stdout(io.StringIO()):  # Piccolo's "  - id... ok!"
                    await manager.run()
            await Migration.insert(Migration(name=migration_id, app_name=app_name)).run()
            step = AppliedMigration(app_name, migration_id, getattr(module, "DESCRIPTION", ""))
            applied.append(step)
            if on_applied is not None:
                on_applied(step)
    return applied
