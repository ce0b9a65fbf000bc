"""Outgoing webhooks: subscriptions (with their cursor in the event log and failure
state) and the delivery log."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-06T01:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhooks: subscriptions with a cursor in the event log, and the delivery log"

UP = """
CREATE TABLE webhook_subscriptions (
    id uuid PRIMARY KEY,
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url text NOT NULL,
    description text NOT NULL DEFAULT '',
    event_types text[] NOT NULL DEFAULT '{}',
    channel_ids uuid[] NOT NULL DEFAULT '{}',
    department_ids uuid[] NOT NULL DEFAULT '{}',
    active boolean NOT NULL DEFAULT true,
    secret text NOT NULL,
    previous_secret text,
    previous_secret_until timestamptz,
    cursor bigint NOT NULL DEFAULT 0,
    failures integer NOT NULL DEFAULT 0,
    failing_since timestamptz,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    paused_at timestamptz,
    paused_reason text,
    lease_until timestamptz,
    lease_token uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_subscriptions_tenant_idx
    ON webhook_subscriptions (tenant, created_at DESC, id DESC);
CREATE INDEX webhook_subscriptions_due_idx
    ON webhook_subscriptions (next_attempt_at) WHERE active AND paused_at IS NULL;

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    tenant uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    subscription uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    kind varchar(12) NOT NULL DEFAULT 'delivery',
    seqs bigint[] NOT NULL,
    succeeded boolean NOT NULL,
    status_code integer,
    latency_ms integer,
    error text,
    response_body text
);
CREATE INDEX webhook_deliveries_subscription_idx
    ON webhook_deliveries (subscription, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_created_idx ON webhook_deliveries (created_at);
"""

DOWN = """
DROP TABLE IF EXISTS webhook_deliveries;
DROP TABLE IF EXISTS webhook_subscriptions;
"""


async def _run(sql: str) -> None:
    await engine_finder().current_transaction.get().connection.execute(sql)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="webhooks", description=DESCRIPTION)

    async def apply() -> None:
        await _run(UP)

    async def revert() -> None:
        await _run(DOWN)

    manager.add_raw(apply)
    manager.add_raw_backwards(revert)
    return manager
