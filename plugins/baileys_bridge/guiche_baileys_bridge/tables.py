"""The plugin's one table: a row per Baileys channel with its encrypted auth state, the
lease saying which bridge runs it, and what the operator needs to see (state, QR,
last event). Written with SQL (`store.py`); the Piccolo class only binds the engine."""

from __future__ import annotations

from piccolo.columns import UUID, Text, Timestamptz
from piccolo.table import Table


class BaileysSession(Table, tablename="baileys_sessions"):
    channel_id = UUID(primary_key=True)
    tenant_id = UUID()
    auth_encrypted = Text(default="")
    owner = Text(default="")
    address = Text(default="")
    secret_encrypted = Text(default="")
    lease_until = Timestamptz(null=True, default=None)
    state = Text(default="new")
    detail = Text(default="")
    me = Text(default="")
    qr = Text(default="")
    qr_at = Timestamptz(null=True, default=None)
    pairing_code = Text(default="")
    command = Text(default="")
    last_event_at = Timestamptz(null=True, default=None)
