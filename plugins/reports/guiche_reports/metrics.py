"""The metric definitions (README "Definitions"), as one pure function of a timeline.

A conversation lives in episodes: it opens, is closed, and may be reopened (the same
conversation, a new episode). Each time below is measured per episode and the
conversation's figure is the sum over its episodes (first response: the first episode
that has one), so a reopen never counts the days it spent closed. Every time has a
wall-clock (`_s`) and a business-hours (`_bs`) variant from the company's `Calendar`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from guiche.plugin import INBOUND, OUTBOUND, ConversationTimeline
from guiche_reports.calendar import Calendar

CLOSES = frozenset({"closed", "expired"})
MEASURES = (
    "waiting_s",
    "waiting_bs",
    "first_response_s",
    "first_response_bs",
    "handling_s",
    "handling_bs",
    "duration_s",
    "duration_bs",
)


@dataclass
class _Episode:
    start: dt.datetime
    queued_at: dt.datetime | None = None
    assigned_at: dt.datetime | None = None
    first_inbound_at: dt.datetime | None = None
    first_agent_message_at: dt.datetime | None = None
    first_response_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    unanswered: bool = False


@dataclass(frozen=True)
class Metrics:
    """One finished conversation's figures (a row of the metrics table)."""

    conversation_id: uuid.UUID
    tenant_id: uuid.UUID
    contact_id: uuid.UUID
    channel_id: uuid.UUID
    channel_type: str
    department_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    tabulation_id: uuid.UUID | None
    opened_at: dt.datetime
    queued_at: dt.datetime | None
    first_assigned_at: dt.datetime | None
    first_agent_message_at: dt.datetime | None
    closed_at: dt.datetime
    messages_in: int
    messages_out: int
    transfers: int
    reopens: int
    times: dict[str, float | None] = field(default_factory=dict)
    response_sum_s: float = 0.0
    response_sum_bs: float = 0.0
    response_count: int = 0
    sla_met: bool | None = None


def _span(
    cal: Calendar, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[float, float] | None:
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds(), cal.seconds(start, end)


def _earliest(*values: dt.datetime | None) -> dt.datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def measure(
    timeline: ConversationTimeline,
    calendar: Calendar,
    sla_target: Callable[[uuid.UUID | None], int],
) -> Metrics | None:
    """The figures of a closed conversation (None while it is open)."""
    if timeline.status != "CLOSED" or (not timeline.steps and timeline.closed_at is None):
        return None
    episodes: list[_Episode] = []
    episode: _Episode | None = None
    awaiting: dt.datetime | None = None  # the customer's unanswered message, since when
    counts = {"in": 0, "out": 0, "transfers": 0, "reopens": 0}
    responses: list[tuple[float, float]] = []
    agent = None
    for step in timeline.steps:
        if episode is None or step.kind == "reopened":
            if episode is not None:
                counts["reopens"] += 1
            episode = _Episode(start=step.at)
            episodes.append(episode)
            awaiting = None
        if step.kind == INBOUND:
            counts["in"] += 1
            if episode.closed_at is None:
                episode.first_inbound_at = episode.first_inbound_at or step.at
                awaiting = awaiting or step.at
        elif step.kind == OUTBOUND:
            counts["out"] += 1
            if step.agent_id is None or episode.closed_at is not None:
                continue  # automated sends (bots, campaigns, API keys) answer nobody
            agent = step.agent_id
            episode.first_agent_message_at = episode.first_agent_message_at or step.at
            if awaiting is not None:
                responses.append(_span(calendar, awaiting, step.at) or (0.0, 0.0))
                if episode.first_response_at is None:
                    episode.first_response_at = step.at
                awaiting = None
        else:
            if step.kind == "transferred":
                counts["transfers"] += 1
            if step.status == "PENDING" and step.agent_id is None and episode.queued_at is None:
                episode.queued_at = step.at
            if step.agent_id is not None and step.kind not in CLOSES:
                agent = step.agent_id
                if episode.assigned_at is None:
                    episode.assigned_at = step.at
            if step.kind in CLOSES:
                episode.closed_at = step.at
                episode.unanswered = awaiting is not None and episode.first_response_at is None
                awaiting = None
    closed_at = timeline.closed_at or (episodes[-1].closed_at if episodes else None)
    if closed_at is None:
        return None
    if not episodes:
        episodes.append(_Episode(start=timeline.created_at))
    if episodes[-1].closed_at is None:
        episodes[-1].closed_at = closed_at
        episodes[-1].unanswered = awaiting is not None and episodes[-1].first_response_at is None

    times: dict[str, float | None] = dict.fromkeys(MEASURES)

    def add(name: str, span: tuple[float, float] | None) -> None:
        if span is None:
            return
        wall, business = span
        times[f"{name}_s"] = (times[f"{name}_s"] or 0.0) + wall
        times[f"{name}_bs"] = (times[f"{name}_bs"] or 0.0) + business

    for ep in episodes:
        if ep.queued_at is not None:
            served = _earliest(
                ep.assigned_at if ep.assigned_at and ep.assigned_at >= ep.queued_at else None,
                ep.first_agent_message_at,
            )
            add("waiting", _span(calendar, ep.queued_at, served))
        add("handling", _span(calendar, ep.first_agent_message_at, ep.closed_at))
        add("duration", _span(calendar, ep.start, ep.closed_at))
        if times["first_response_s"] is None:
            add("first_response", _span(calendar, ep.first_inbound_at, ep.first_response_at))

    sla_met: bool | None = None
    if times["first_response_bs"] is not None:
        sla_met = times["first_response_bs"] <= sla_target(timeline.department_id)
    elif any(ep.unanswered for ep in episodes):
        sla_met = False

    return Metrics(
        conversation_id=timeline.id,
        tenant_id=timeline.tenant_id,
        contact_id=timeline.contact_id,
        channel_id=timeline.channel_id,
        channel_type=timeline.channel_type,
        department_id=timeline.department_id,
        agent_id=timeline.assignee_id or agent,
        tabulation_id=timeline.tabulation_id,
        opened_at=episodes[0].start,
        queued_at=_earliest(*(ep.queued_at for ep in episodes[:1])),
        first_assigned_at=episodes[0].assigned_at,
        first_agent_message_at=_earliest(*(ep.first_agent_message_at for ep in episodes)),
        closed_at=closed_at,
        messages_in=counts["in"],
        messages_out=counts["out"],
        transfers=counts["transfers"],
        reopens=counts["reopens"],
        times=times,
        response_sum_s=sum(r[0] for r in responses),
        response_sum_bs=sum(r[1] for r in responses),
        response_count=len(responses),
        sla_met=sla_met,
    )
