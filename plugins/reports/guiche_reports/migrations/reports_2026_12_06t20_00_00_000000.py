"""Rollups that answer a year in milliseconds: histograms as packed counts (`bytea`, merged
by integer addition, `guiche_reports.histogram`) instead of JSONB objects, and
`reports_blocks`: per single dimension (total, agent, department, channel, tabulation,
hour of day), sums and histograms over aligned blocks of 2**level days; and
`reports_frontier`: the first day whose blocks above level 0 may be incomplete.

The first version's rollups are dropped and the catch-up cursors forgotten: the next runs
of `reports.catch_up` measure every closed conversation again and build both tables (a
long history spans runs; until then its aggregates are missing, never wrong)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-06T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "reports: packed histograms, day blocks per single dimension"

_MEASURES = (
    "waiting_s",
    "waiting_bs",
    "first_response_s",
    "first_response_bs",
    "handling_s",
    "handling_bs",
    "duration_s",
    "duration_bs",
)

_BLOCK_MEASURES = ",\n".join(
    f"    {m}_n integer NOT NULL DEFAULT 0, {m}_sum double precision NOT NULL DEFAULT 0,"
    f" {m}_hist bytea"
    for m in _MEASURES
)

UP = f"""
DELETE FROM reports_hourly;
DELETE FROM reports_cursor;
ALTER TABLE reports_hourly {", ".join(f"DROP COLUMN {m}_hist" for m in _MEASURES)};
ALTER TABLE reports_hourly {", ".join(f"ADD COLUMN {m}_hist bytea" for m in _MEASURES)};

CREATE TABLE reports_blocks (
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    dim smallint NOT NULL,
    level smallint NOT NULL,
    start date NOT NULL,
    key text NOT NULL,
    conversations integer NOT NULL DEFAULT 0,
    reopened integer NOT NULL DEFAULT 0,
    transfers integer NOT NULL DEFAULT 0,
    sla_met integer NOT NULL DEFAULT 0,
    sla_counted integer NOT NULL DEFAULT 0,
    messages_in bigint NOT NULL DEFAULT 0,
    messages_out bigint NOT NULL DEFAULT 0,
    response_sum_s double precision NOT NULL DEFAULT 0,
    response_sum_bs double precision NOT NULL DEFAULT 0,
    response_count integer NOT NULL DEFAULT 0,
{_BLOCK_MEASURES},
    PRIMARY KEY (tenant, level, start, dim, key)
);

CREATE TABLE reports_frontier (
    tenant uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    day date NOT NULL
);
"""

DOWN = f"""
DROP TABLE IF EXISTS reports_frontier;
DROP TABLE IF EXISTS reports_blocks;
DELETE FROM reports_hourly;
DELETE FROM reports_cursor;
ALTER TABLE reports_hourly {", ".join(f"DROP COLUMN {m}_hist" for m in _MEASURES)};
ALTER TABLE reports_hourly {
    ", ".join(f"ADD COLUMN {m}_hist jsonb NOT NULL DEFAULT '{{}}'" for m in _MEASURES)
};
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
