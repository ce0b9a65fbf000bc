"""The reports plugin's tables: one metrics row per finished conversation, hourly rollups
per (agent, department, channel, tabulation), the catch-up cursor, dashboard layouts."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-06T01:18:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "reports: conversation metrics, hourly rollups, catch-up cursor, layouts"

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

_ROLLUP_MEASURES = ",\n".join(
    f"    {m}_n integer NOT NULL DEFAULT 0, {m}_sum double precision NOT NULL DEFAULT 0,"
    f" {m}_hist jsonb NOT NULL DEFAULT '{{}}'"
    for m in _MEASURES
)

UP = f"""
CREATE TABLE reports_conversations (
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    contact uuid,
    channel uuid,
    channel_type varchar(60) NOT NULL DEFAULT '',
    department uuid,
    agent uuid,
    tabulation uuid,
    opened_at timestamptz NOT NULL,
    queued_at timestamptz,
    first_assigned_at timestamptz,
    first_agent_message_at timestamptz,
    closed_at timestamptz NOT NULL,
    day date NOT NULL,
    hour smallint NOT NULL,
    messages_in integer NOT NULL DEFAULT 0,
    messages_out integer NOT NULL DEFAULT 0,
    transfers integer NOT NULL DEFAULT 0,
    reopens integer NOT NULL DEFAULT 0,
    {", ".join(f"{m} double precision" for m in _MEASURES)},
    response_sum_s double precision NOT NULL DEFAULT 0,
    response_sum_bs double precision NOT NULL DEFAULT 0,
    response_count integer NOT NULL DEFAULT 0,
    sla_met boolean,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, conversation)
);
CREATE INDEX reports_conversations_closed_idx
    ON reports_conversations (tenant, closed_at DESC, conversation DESC);
CREATE INDEX reports_conversations_agent_idx
    ON reports_conversations (tenant, agent, closed_at DESC, conversation DESC);
CREATE INDEX reports_conversations_day_idx ON reports_conversations (tenant, day);

CREATE TABLE reports_hourly (
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day date NOT NULL,
    hour smallint NOT NULL,
    agent uuid,
    department uuid,
    channel uuid,
    tabulation uuid,
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
{_ROLLUP_MEASURES}
);
CREATE INDEX reports_hourly_day_idx ON reports_hourly (tenant, day);

CREATE TABLE reports_cursor (
    tenant uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    closed_at timestamptz NOT NULL,
    conversation uuid NOT NULL
);

CREATE TABLE reports_layouts (
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    "user" uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    layout jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, "user")
);
"""

DOWN = """
DROP TABLE IF EXISTS reports_layouts;
DROP TABLE IF EXISTS reports_cursor;
DROP TABLE IF EXISTS reports_hourly;
DROP TABLE IF EXISTS reports_conversations;
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
