"""The campaigns plugin's SQL, every statement scoped by tenant where a caller names rows."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

FINAL = ("finished", "cancelled")
LEDGER_STATES = (
    "pending", "sending", "queued", "sent", "delivered", "read", "replied",
    "failed", "skipped", "opted_out",
)  # fmt: skip
OPEN_STATES = ("pending", "sending")
#: Status webhooks only move a row forward along this order (a late `delivered` never
#: undoes `read`); `failed` may follow any of the first three.
RANK = {"queued": 1, "sent": 2, "delivered": 3, "read": 4, "replied": 5}
#: A core message status → the ledger state it means.
STATE_OF_STATUS = {"pending": "queued", "sent": "sent", "delivered": "delivered",
                   "read": "read", "failed": "failed", "unknown": "failed"}  # fmt: skip

COLUMNS = """id, tenant, name, channel, content, status, rate_per_minute, jitter, start_at,
send_window, daily_cap, run, started_at, finished_at, created_at, updated_at"""

INSERT = f"""
INSERT INTO campaigns (tenant, name, channel, content, rate_per_minute, jitter, start_at,
                       send_window, daily_cap)
VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8::jsonb, $9)
RETURNING {COLUMNS}
"""

GET = f"SELECT {COLUMNS} FROM campaigns WHERE id = $1 AND tenant = $2"

LIST = f"""
SELECT {COLUMNS} FROM campaigns WHERE tenant = $1
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
ORDER BY created_at DESC, id DESC LIMIT $4
"""

DELETE = "DELETE FROM campaigns WHERE id = $1 AND tenant = $2 AND status = ANY($3::text[])"

SET_STATUS = f"""
UPDATE campaigns SET status = $3::text, updated_at = now(),
    started_at = CASE WHEN $3::text = 'running' THEN coalesce(started_at, now())
                      ELSE started_at END,
    finished_at = CASE WHEN $3::text IN ('finished', 'cancelled') THEN now()
                       ELSE finished_at END
WHERE id = $1 AND tenant = $2 AND status = ANY($4::text[])
RETURNING {COLUMNS}
"""

COUNTS = """
SELECT state, count(*) AS n FROM campaign_targets
WHERE campaign = $1 AND run = $2 GROUP BY state
"""

COUNTS_ALL = """
SELECT state, count(*) AS n, count(opted_out_at) AS opted FROM campaign_targets
WHERE campaign = $1 GROUP BY state
"""

OPTED_OUT = "SELECT 1 FROM campaign_opt_outs WHERE tenant = $1 AND channel = $2 AND phone = $3"

INSERT_TARGETS = """
INSERT INTO campaign_targets (tenant, campaign, run, contact, phone, name, variables, state,
                              reason)
SELECT $1, $2, $3, t.contact, t.phone, t.name, t.variables::jsonb,
       CASE WHEN o.phone IS NULL THEN 'pending' ELSE 'opted_out' END,
       CASE WHEN o.phone IS NULL THEN NULL ELSE '{"code": "opted_out"}'::jsonb END
FROM unnest($4::uuid[], $5::text[], $6::text[], $7::text[])
     AS t(contact, phone, name, variables)
LEFT JOIN campaign_opt_outs o ON o.tenant = $1 AND o.channel = $8 AND o.phone = t.phone
ON CONFLICT (campaign, run, phone) DO NOTHING
RETURNING state
"""

# The driver's lease on a campaign: one driver at a time, re-driven when it expires.
TAKE_DRIVER = """
UPDATE campaigns SET driver_token = $2, driver_until = now() + make_interval(secs => $3)
WHERE id = $1 AND status = 'running'
  AND (driver_until IS NULL OR driver_until < now() OR driver_token = $2)
RETURNING id
"""

DROP_DRIVER = """
UPDATE campaigns SET driver_token = NULL, driver_until = NULL
WHERE id = $1 AND driver_token = $2
"""

DRIVEN = f"""
SELECT {COLUMNS}, driver_token FROM campaigns WHERE id = $1
"""

#: Claims take a batch of rows at once (the driver sends each at its own slot). Expired
#: claims (a crashed driver's: their send may have reached core, same key, never twice)
#: are looked for now and then, not per claim: every row passes through `sending`, so that
#: range of the index is mostly dead entries until a vacuum.
CLAIM_EXPIRED = """
UPDATE campaign_targets t SET state = 'sending', attempts = attempts + 1,
       lease_until = now() + make_interval(secs => $3), updated_at = now()
WHERE t.id IN (
    SELECT id FROM campaign_targets
    WHERE campaign = $1 AND run = $2 AND state = 'sending' AND lease_until < now()
    ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED)
RETURNING t.id, t.seq, t.contact, t.phone, t.name, t.variables, t.attempts
"""

#: The next pending rows after `$4` (the driver's cursor: the highest seq it claimed).
#: Claimed rows leave dead entries at the head of the pending range until a vacuum, so a
#: scan from the start cost 10 ms per claim after 90,000 sends (1,800 buffers); from the
#: cursor it reads a few pages whatever the campaign's progress.
CLAIM_NEXT = """
UPDATE campaign_targets t SET state = 'sending', attempts = attempts + 1,
       lease_until = now() + make_interval(secs => $3), updated_at = now()
WHERE t.id IN (
    SELECT id FROM campaign_targets
    WHERE campaign = $1 AND run = $2 AND state = 'pending' AND seq > $4
    ORDER BY seq LIMIT $5 FOR UPDATE SKIP LOCKED)
RETURNING t.id, t.seq, t.contact, t.phone, t.name, t.variables, t.attempts
"""

#: Claimed rows the driver will not send (paused, cancelled, slice over, lease lost) go
#: back to `pending` (`skipped` if the campaign was cancelled meanwhile), each only while
#: it still holds this driver's claim (same attempt).
RELEASE = """
UPDATE campaign_targets t
SET state = CASE WHEN c.status = 'cancelled' THEN 'skipped' ELSE 'pending' END,
    reason = CASE WHEN c.status = 'cancelled' THEN '{"code": "cancelled"}'::jsonb
                  ELSE t.reason END,
    lease_until = NULL, updated_at = now()
FROM unnest($2::uuid[], $3::int[]) AS r(id, attempts), campaigns c
WHERE t.id = r.id AND t.attempts = r.attempts AND t.state = 'sending'
  AND c.id = $1 AND t.campaign = c.id
"""

SETTLE_QUEUED = """
UPDATE campaign_targets SET state = $4::text, message_id = $2, contact = $3, sent_at = now(),
       lease_until = NULL, reason = NULL, updated_at = now()
WHERE id = $1 AND state = 'sending'
"""

SETTLE_FAILED = """
UPDATE campaign_targets SET state = $2::text, reason = $3::jsonb, lease_until = NULL,
       updated_at = now()
WHERE id = $1 AND state = 'sending'
"""

UNCLAIM = """
UPDATE campaign_targets SET state = 'pending', lease_until = NULL, updated_at = now()
WHERE id = $1 AND state = 'sending'
"""

OPEN_LEFT = """
SELECT count(*) FROM campaign_targets
WHERE campaign = $1 AND run = $2 AND state IN ('pending', 'sending')
"""

SENT_TODAY = """
SELECT count(*) FROM campaign_targets t JOIN campaigns c ON c.id = t.campaign
WHERE c.channel = $1 AND t.sent_at >= $2
"""

CANCEL_OPEN = """
UPDATE campaign_targets SET state = 'skipped', reason = '{"code": "cancelled"}'::jsonb,
       lease_until = NULL, updated_at = now()
WHERE campaign = $1 AND run = $2 AND state = 'pending'
"""

PROGRESS_DUE = """
UPDATE campaigns SET progress_at = now()
WHERE id = $1 AND (progress_at IS NULL OR progress_at <= now() - interval '1 second')
RETURNING id
"""

DUE_SCHEDULED = """
UPDATE campaigns SET status = 'running', started_at = coalesce(started_at, now()),
       updated_at = now()
WHERE status = 'scheduled' AND start_at <= now()
RETURNING id, tenant, channel
"""

STALLED = """
SELECT id FROM campaigns
WHERE status = 'running' AND (driver_until IS NULL OR driver_until < now())
LIMIT 500
"""

STATUS_UPDATE = """
UPDATE campaign_targets SET state = $3::text, reason = coalesce($4::jsonb, reason),
       updated_at = now()
WHERE tenant = $1 AND message_id = $2
  AND state = ANY($5::text[])
RETURNING campaign
"""

REPLIED = """
UPDATE campaign_targets t SET state = 'replied', updated_at = now()
FROM campaigns c
WHERE t.tenant = $1 AND t.contact = $2 AND c.id = t.campaign AND c.channel = $3
  AND t.state IN ('queued', 'sent', 'delivered', 'read')
  AND t.sent_at > now() - interval '7 days'
RETURNING t.campaign
"""

INSERT_OPT_OUTS = """
INSERT INTO campaign_opt_outs (tenant, channel, phone, source)
SELECT $1, $2, p, $4 FROM unnest($3::text[]) AS p
ON CONFLICT DO NOTHING
"""

MARK_OPTED_OUT = """
UPDATE campaign_targets t
SET state = CASE WHEN t.state = 'pending' THEN 'opted_out' ELSE t.state END,
    reason = CASE WHEN t.state = 'pending' THEN '{"code": "opted_out"}'::jsonb ELSE t.reason END,
    opted_out_at = coalesce(t.opted_out_at, now()), updated_at = now()
FROM campaigns c
WHERE t.tenant = $1 AND c.id = t.campaign AND c.channel = $2 AND t.phone = ANY($3::text[])
  AND c.status NOT IN ('finished', 'cancelled')
"""

LEDGER = """
SELECT id, seq, run, contact, phone, name, variables, state, reason, message_id, attempts,
       sent_at, opted_out_at, updated_at
FROM campaign_targets
WHERE campaign = $1 AND tenant = $2
  AND ($3::int IS NULL OR run = $3)
  AND ($4::text IS NULL OR state = $4)
  AND seq > $5
ORDER BY seq LIMIT $6
"""

RESEND_FAILED = """
INSERT INTO campaign_targets (tenant, campaign, run, contact, phone, name, variables)
SELECT tenant, campaign, $3, contact, phone, name, variables FROM campaign_targets
WHERE campaign = $1 AND tenant = $2 AND run = $3 - 1 AND state = 'failed'
ON CONFLICT (campaign, run, phone) DO NOTHING
"""

DAILY = """
SELECT (t.sent_at AT TIME ZONE $3)::date AS day, count(*) AS sent,
       count(*) FILTER (WHERE t.state IN ('delivered', 'read', 'replied')) AS delivered,
       count(*) FILTER (WHERE t.state IN ('read', 'replied')) AS read,
       count(*) FILTER (WHERE t.state = 'replied') AS replied,
       count(*) FILTER (WHERE t.state = 'failed') AS failed
FROM campaign_targets t
WHERE t.campaign = $1 AND t.tenant = $2 AND t.sent_at IS NOT NULL
GROUP BY 1 ORDER BY 1
"""


def jsonb(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()


def loads(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def campaign_out(row: Any) -> dict[str, Any]:
    """A campaign row as the API shows it."""
    out = {key: row[key] for key in COLUMNS.replace("\n", " ").replace(" ", "").split(",")}
    out.pop("tenant")
    out["content"] = loads(out["content"])
    out["send_window"] = loads(out["send_window"])
    return out


def counts_of(rows: Any) -> dict[str, int]:
    counts = dict.fromkeys(LEDGER_STATES, 0)
    for row in rows:
        counts[row["state"]] = row["n"]
    return counts


def as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
