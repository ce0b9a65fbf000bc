"""Invitations, and each company's own display name for its people.

An account belongs to a person, not to a company: a company adding an email that already
has an account now invites it (`invitations`, pending until the person or a platform
admin accepts) instead of attaching it. The name a company shows for someone lives on
their seat (`memberships.display_name`, falling back to the person's own `users.name`),
so one company renaming a person changes nothing anywhere else.
"""

from guiche.database.sql_migration import sql_migration

ID = "2026-12-05T09:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "invitations; memberships.display_name"

SCHEMA = """
ALTER TABLE memberships ADD COLUMN display_name varchar(200);

CREATE TABLE invitations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email varchar(320) NOT NULL,
    display_name varchar(200) NOT NULL DEFAULT '',
    role varchar(20) NOT NULL CHECK (role IN ('owner','admin','supervisor','agent','viewer')),
    max_concurrent_chats integer NOT NULL DEFAULT 5 CHECK (max_concurrent_chats >= 0),
    status varchar(10) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending','accepted','declined','revoked')),
    invited_by uuid REFERENCES users(id) ON DELETE SET NULL,
    responded_by uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    responded_at timestamptz
);
-- one open invitation per company and email; the person's inbox looks them up by email
CREATE UNIQUE INDEX invitations_pending_key ON invitations (tenant, lower(email))
    WHERE status = 'pending';
CREATE INDEX invitations_email_idx ON invitations (lower(email)) WHERE status = 'pending';
CREATE INDEX invitations_tenant_idx ON invitations (tenant, created_at DESC, id DESC);
"""

DROP = """
DROP TABLE IF EXISTS invitations;
ALTER TABLE memberships DROP COLUMN IF EXISTS display_name;
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP)
