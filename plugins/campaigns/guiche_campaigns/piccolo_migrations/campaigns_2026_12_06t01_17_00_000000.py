"""Campaigns, their per-recipient ledger (one row per target and run) and opt-outs.

A target row is claimed (`sending`, with a lease) before the send and settled after,
and it keeps the outbox message id, so "sent at most once per run" and "resend only
the failed" are queries, not hopes.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-06T01:17:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "campaigns: campaigns, per-recipient ledger, opt-outs"

UP = """
CREATE TABLE campaigns (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name varchar(200) NOT NULL,
    channel uuid NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    content jsonb NOT NULL,
    status varchar(12) NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft','scheduled','running','paused','finished','cancelled')),
    rate_per_minute double precision NOT NULL DEFAULT 20,
    jitter double precision NOT NULL DEFAULT 0.2,
    start_at timestamptz,
    send_window jsonb,
    daily_cap integer,
    run integer NOT NULL DEFAULT 1,
    driver_token uuid,
    driver_until timestamptz,
    progress_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_tenant_idx ON campaigns (tenant, created_at DESC, id DESC);
CREATE INDEX campaigns_active_idx ON campaigns (status) WHERE status IN ('scheduled','running');

CREATE TABLE campaign_targets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq bigserial,
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    campaign uuid NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    run integer NOT NULL DEFAULT 1,
    contact uuid,
    phone varchar(20) NOT NULL,
    name varchar(200) NOT NULL DEFAULT '',
    variables jsonb NOT NULL DEFAULT '{}',
    state varchar(12) NOT NULL DEFAULT 'pending',
    reason jsonb,
    message_id uuid,
    attempts integer NOT NULL DEFAULT 0,
    lease_until timestamptz,
    sent_at timestamptz,
    opted_out_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign, run, phone)
);
CREATE INDEX campaign_targets_next_idx ON campaign_targets (campaign, run, seq)
    WHERE state IN ('pending', 'sending');
CREATE INDEX campaign_targets_list_idx ON campaign_targets (campaign, run, state, seq);
CREATE INDEX campaign_targets_message_idx ON campaign_targets (message_id)
    WHERE message_id IS NOT NULL;
CREATE INDEX campaign_targets_contact_idx ON campaign_targets (tenant, contact)
    WHERE contact IS NOT NULL;

CREATE TABLE campaign_opt_outs (
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    channel uuid NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    phone varchar(20) NOT NULL,
    source varchar(20) NOT NULL DEFAULT 'api',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, channel, phone)
);
"""

DOWN = """
DROP TABLE IF EXISTS campaign_opt_outs;
DROP TABLE IF EXISTS campaign_targets;
DROP TABLE IF EXISTS campaigns;
"""


async def _run(sql: str) -> None:
    await engine_finder().current_transaction.get().connection.execute(sql)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="campaigns", description=DESCRIPTION)

    async def up() -> None:
        await _run(UP)

    async def down() -> None:
        await _run(DOWN)

    manager.add_raw(up)
    manager.add_raw_backwards(down)
    return manager
