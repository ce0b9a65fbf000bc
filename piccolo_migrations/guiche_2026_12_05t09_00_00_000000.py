"""Keyset indexes for the admin read APIs: the audit trail and provider usage.

`GET /api/v1/audit` and `GET /api/v1/provider-usage` page on `(created_at, id)` per
tenant, filtered by period; these indexes start each page at its cursor.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-05T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit_log and provider_usage: (tenant, created_at, id) keyset indexes"

SCHEMA = """
CREATE INDEX audit_log_tenant_created_idx ON audit_log (tenant, created_at DESC, id DESC);
DROP INDEX IF EXISTS provider_usage_tenant_idx;
CREATE INDEX provider_usage_tenant_idx ON provider_usage (tenant, created_at DESC, id DESC);
"""

DROP = """
DROP INDEX IF EXISTS audit_log_tenant_created_idx;
DROP INDEX IF EXISTS provider_usage_tenant_idx;
CREATE INDEX provider_usage_tenant_idx ON provider_usage (tenant, created_at DESC);
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
