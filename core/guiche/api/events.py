"""`GET /api/v1/events?after=<seq>`: the durable event log, for clients that reconnect.

Pub/sub may drop events (a socket reconnecting, a process restarting); every event is
also recorded with a sequence, so a client asks for what came after the last one it
saw. The WebSocket's visibility rule applies, row by row.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, Field

from guiche.auth.principal import current_principal
from guiche.auth.visibility import viewer_for
from guiche.http.endpoint import endpoint
from guiche.models import Event
from guiche.realtime.events import BusEvent
from guiche.websocket.hub import event_visible

routes = web.RouteTableDef()

#: Rows read per visible item asked for, at most: bounds a page's cost for a caller who
#: sees few of the company's events (the page then ends early with `has_more`).
SCAN_FACTOR = 5


#: Sequences are Postgres bigints: a larger `after` is a client error, not an overflow.
MAX_SEQ = 2**63 - 1


class EventsQuery(BaseModel):
    after: int = Field(0, ge=0, le=MAX_SEQ, description="The last sequence the client has seen.")
    limit: int = Field(100, ge=1, le=500)


class EventOut(BaseModel):
    seq: int
    type: str
    data: dict[str, Any]
    conversation_id: uuid.UUID | None
    created_at: dt.datetime


class EventPage(BaseModel):
    items: list[EventOut]
    next_after: int = Field(description="Pass as `after` to continue.")
    has_more: bool


def _event(row: dict[str, Any]) -> BusEvent:
    data = row["data"]
    return BusEvent(
        seq=row["seq"],
        tenant_id=row["tenant"],
        type=row["type"],
        data=orjson.loads(data) if isinstance(data, str | bytes) else data,
        conversation_id=row["conversation"],
        department_id=row["department"],
        assignee_id=row["assignee"],
        created_at=row["created_at"],
    )


@routes.get("/api/v1/events")
@endpoint(
    "events.read",
    query=EventsQuery,
    response=EventPage,
    summary="Events after a sequence number (resync after a WebSocket reconnect)",
    tags=("events",),
)
async def list_events(request: web.Request, *, query: EventsQuery) -> EventPage:
    principal = current_principal(request)
    viewer = await viewer_for(principal)
    items: list[dict[str, Any]] = []
    cursor = query.after
    budget = query.limit * SCAN_FACTOR
    exhausted = False
    while len(items) < query.limit and budget > 0:
        batch = min(query.limit, budget)
        rows = await Event.raw(
            "SELECT seq, tenant, type, conversation, department, assignee, data, created_at"
            " FROM events WHERE tenant = {} AND seq > {} ORDER BY seq LIMIT {}",
            principal.tenant_id,
            cursor,
            batch,
        )
        budget -= len(rows)
        consumed = 0
        for row in rows:
            cursor, consumed = row["seq"], consumed + 1
            event = _event(row)
            if event_visible(viewer, event):
                items.append(event.wire())
                if len(items) == query.limit:
                    break
        if len(rows) < batch and consumed == len(rows):
            exhausted = True  # read to the end of the log
            break
    return EventPage.model_validate(
        {"items": items, "next_after": cursor, "has_more": not exhausted}
    )
