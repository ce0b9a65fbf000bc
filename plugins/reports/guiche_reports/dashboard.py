"""The dashboard: today's indicators from the rollups (`aggregates.aggregate`: for most
callers one day's block row), the queue as it is now, each person's saved layout, and the
live `dashboard.updated` event.

Live updates are coalesced: a conversation event marks the company changed (a Redis key
when Redis is configured, else this process's memory) and a task every 5 seconds
publishes one `dashboard.updated` per changed company, so clients re-read at most every
5 s while something changes. The event carries no figures: each client re-reads
`GET dashboard`, which answers with what its caller may see.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson

from guiche.plugin import publish_event, queue_snapshot
from guiche_reports.aggregates import Scope, aggregate
from guiche_reports.calendar import Calendar
from guiche_reports.visibility import Visibility

EVENT = "dashboard.updated"
_DIRTY_KEY = "guiche:reports:dirty:{}"
_dirty_here: set[uuid.UUID] = set()

_LAYOUT = 'SELECT layout, updated_at FROM reports_layouts WHERE tenant = $1 AND "user" = $2'
_SAVE_LAYOUT = """
INSERT INTO reports_layouts (tenant, "user", layout, updated_at) VALUES ($1, $2, $3::jsonb, now())
ON CONFLICT (tenant, "user") DO UPDATE SET layout = EXCLUDED.layout, updated_at = now()
RETURNING layout, updated_at
"""

DEFAULT_LAYOUT: dict[str, Any] = {
    "widgets": [
        {"id": "mean_duration", "type": "mean_duration", "x": 0, "y": 0, "w": 3, "h": 2},
        {"id": "today_count", "type": "today_count", "x": 3, "y": 0, "w": 3, "h": 2},
        {"id": "cloud_cost_24h", "type": "cloud_cost_24h", "x": 6, "y": 0, "w": 3, "h": 2},
        {"id": "mean_waiting", "type": "mean_waiting", "x": 9, "y": 0, "w": 3, "h": 2},
        {"id": "queue", "type": "queue", "x": 0, "y": 2, "w": 12, "h": 4},
    ]
}


async def indicators(
    services: Any, tenant_id: uuid.UUID, calendar: Calendar, visible: Visibility
) -> dict[str, Any]:
    """Today's figures (conversations finished today, local day) and the queue now, as far
    as `visible` allows (an agent: their own conversations and seat)."""
    today = calendar.local(dt.datetime.now(dt.UTC)).date()
    scope = Scope(tenant_id, today, today, {}, visible)
    totals = await aggregate(services, scope, "total", percentiles=False)
    row = totals[0] if totals else None
    queue = await queue_snapshot(services, tenant_id)
    departments = [d for d in queue.departments if visible.sees_queue_of(d.department_id)]
    agents = [a for a in queue.agents if visible.sees_seat_of(a.user_id)]
    oldest = min((d.oldest_queued_at for d in departments if d.oldest_queued_at), default=None)
    now = dt.datetime.now(dt.UTC)
    return {
        "day": today.isoformat(),
        "today_conversations": row["conversations"] if row else 0,
        "mean_duration_seconds": row["duration"]["mean"] if row else None,
        "mean_waiting_seconds": row["waiting"]["mean"] if row else None,
        "sla_pct": row["sla_pct"] if row else None,
        "queue": {
            "waiting": sum(d.waiting for d in departments),
            "oldest_wait_seconds": (now - oldest).total_seconds() if oldest else None,
            "departments": [
                {
                    "department_id": str(d.department_id) if d.department_id else None,
                    "waiting": d.waiting,
                    "oldest_wait_seconds": (now - d.oldest_queued_at).total_seconds()
                    if d.oldest_queued_at
                    else None,
                }
                for d in departments
            ],
            "agents_online": sum(1 for a in agents if a.status == "online"),
            "agents_away": sum(1 for a in agents if a.status == "away"),
            "agents": [
                {
                    "user_id": str(a.user_id),
                    "status": a.status,
                    "open_conversations": a.open_conversations,
                }
                for a in agents
            ],
        },
    }


async def layout(services: Any, tenant_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any]:
    async with services.db.transaction() as transaction:
        row = await transaction.connection.fetchrow(_LAYOUT, tenant_id, user_id)
    if row is None:
        return {"layout": DEFAULT_LAYOUT, "saved": False, "updated_at": None}
    stored = row["layout"]
    return {
        "layout": orjson.loads(stored) if isinstance(stored, str) else stored,
        "saved": True,
        "updated_at": row["updated_at"],
    }


async def save_layout(
    services: Any, tenant_id: uuid.UUID, user_id: uuid.UUID, value: dict[str, Any]
) -> dict[str, Any]:
    async with services.db.transaction() as transaction:
        row = await transaction.connection.fetchrow(
            _SAVE_LAYOUT, tenant_id, user_id, orjson.dumps(value).decode()
        )
    stored = row["layout"]
    return {
        "layout": orjson.loads(stored) if isinstance(stored, str) else stored,
        "saved": True,
        "updated_at": row["updated_at"],
    }


async def mark_changed(services: Any, tenant_id: uuid.UUID) -> None:
    """Note that the company's dashboard changed (published by the next `publish_changed`)."""
    if services.redis is not None:
        await services.redis.set(_DIRTY_KEY.format(tenant_id), "1")
    else:
        _dirty_here.add(tenant_id)


async def _take_changed(services: Any, tenant_id: uuid.UUID) -> bool:
    if services.redis is not None:
        return bool(await services.redis.getdel(_DIRTY_KEY.format(tenant_id)))
    if tenant_id in _dirty_here:
        _dirty_here.discard(tenant_id)
        return True
    return False


async def publish_changed(services: Any, tenant_ids: list[uuid.UUID]) -> int:
    """One `dashboard.updated` per company marked changed since the last run."""
    published = 0
    for tenant_id in tenant_ids:
        if await _take_changed(services, tenant_id):
            at = dt.datetime.now(dt.UTC).isoformat()
            await publish_event(services, tenant_id, EVENT, {"at": at})
            published += 1
    return published
