"""baileys_sessions: per channel, the encrypted auth state, the lease and the state."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-06T01:19:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "baileys_sessions: encrypted auth state, lease and state per channel"

SCHEMA = """
CREATE TABLE baileys_sessions (
    channel_id uuid PRIMARY KEY REFERENCES channels(id) ON DELETE CASCADE,
    tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    auth_encrypted text NOT NULL DEFAULT '',
    owner text NOT NULL DEFAULT '',
    address text NOT NULL DEFAULT '',
    secret_encrypted text NOT NULL DEFAULT '',
    lease_until timestamptz,
    state text NOT NULL DEFAULT 'new',
    detail text NOT NULL DEFAULT '',
    me text NOT NULL DEFAULT '',
    qr text NOT NULL DEFAULT '',
    qr_at timestamptz,
    pairing_code text NOT NULL DEFAULT '',
    command text NOT NULL DEFAULT '',
    last_event_at timestamptz
);
CREATE INDEX baileys_sessions_tenant ON baileys_sessions (tenant_id);
"""

DROP = "DROP TABLE IF EXISTS baileys_sessions;"


async def _run(sql: str) -> None:
    await engine_finder().current_transaction.get().connection.execute(sql)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="baileys_bridge", description=DESCRIPTION)

    async def apply() -> None:
        await _run(SCHEMA)

    async def revert() -> None:
        await _run(DROP)

    manager.add_raw(apply)
    manager.add_raw_backwards(revert)
    return manager
