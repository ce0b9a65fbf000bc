"""`message_keys`: one foreign key, (tenant, channel) -> channels (tenant, id).

A key had two foreign keys, `channel -> channels` and `tenant -> tenants`: two checks per
claimed key, each a query Postgres runs for the row (a bulk import claims a key per
message; the checks were ~14 % of its database time). One composite key does both
jobs in one check and says more: the key's tenant is its channel's tenant, so no key can
sit under one company while naming another's channel. Deleting a channel still deletes
its keys, and deleting a tenant still does (its channels go, and their keys with them).

`channels (tenant, id)` becomes unique for the reference to point at (`id` alone already
is, so no row can break it). The new key is added `NOT VALID` and validated in a second
step, which checks the existing keys without blocking writers for the whole scan.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-07T04:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "message_keys: one foreign key (tenant, channel) instead of two"

SCHEMA = """
ALTER TABLE channels ADD CONSTRAINT channels_tenant_id_key UNIQUE (tenant, id);
ALTER TABLE message_keys
    DROP CONSTRAINT message_keys_channel_fkey,
    DROP CONSTRAINT message_keys_tenant_fkey,
    ADD CONSTRAINT message_keys_tenant_channel_fkey FOREIGN KEY (tenant, channel)
        REFERENCES channels (tenant, id) ON DELETE CASCADE NOT VALID;
ALTER TABLE message_keys VALIDATE CONSTRAINT message_keys_tenant_channel_fkey;
"""

DROP = """
ALTER TABLE message_keys
    DROP CONSTRAINT IF EXISTS message_keys_tenant_channel_fkey,
    ADD CONSTRAINT message_keys_channel_fkey FOREIGN KEY (channel)
        REFERENCES channels (id) ON DELETE CASCADE,
    ADD CONSTRAINT message_keys_tenant_fkey FOREIGN KEY (tenant)
        REFERENCES tenants (id) ON DELETE CASCADE;
ALTER TABLE channels DROP CONSTRAINT IF EXISTS channels_tenant_id_key;
"""

forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
