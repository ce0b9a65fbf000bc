"""`chatguru_accounts (tenant, id)` references `channels (tenant, id)`: an account row
can only sit under the company whose channel it is (its `id` alone referenced the
channel, so a row could name one company's channel under another company).

Rows that did (written by a command that took a channel id without checking its
company) are deleted first, with what they cascade to: they were never that company's.

Also dropped: `chatguru_phones.chats` and `chatguru_agents.name`, never written (the
panel shows neither a phone's chat count nor an agent's name; the phones and agents
endpoints count chats when asked).
"""

from guiche.plugin import sql_migration

ID = "2026-12-07T12:00:00:000000"
VERSION = "1.0.0"
DESCRIPTION = "chatguru: an account belongs to its channel's company; unused columns dropped"

SCHEMA = """
DELETE FROM chatguru_accounts a USING channels c WHERE c.id = a.id AND c.tenant <> a.tenant;
ALTER TABLE chatguru_accounts ADD CONSTRAINT chatguru_accounts_channel_tenant_fkey
    FOREIGN KEY (tenant, id) REFERENCES channels (tenant, id) ON DELETE CASCADE;
ALTER TABLE chatguru_phones DROP COLUMN chats;
ALTER TABLE chatguru_agents DROP COLUMN name;
"""

DROP = """
ALTER TABLE chatguru_accounts DROP CONSTRAINT IF EXISTS chatguru_accounts_channel_tenant_fkey;
ALTER TABLE chatguru_phones ADD COLUMN IF NOT EXISTS chats integer NOT NULL DEFAULT 0;
ALTER TABLE chatguru_agents ADD COLUMN IF NOT EXISTS name varchar(200);
"""


forwards = sql_migration(ID, DESCRIPTION, SCHEMA, DROP, app_name="chatguru")
