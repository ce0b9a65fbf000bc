"""Each definition of plugins/reports/README.md on a hand-built timeline."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest
from guiche_reports.calendar import Calendar
from guiche_reports.config import ReportsSettings
from guiche_reports.metrics import measure

from guiche.plugin import INBOUND, OUTBOUND, ConversationTimeline, TimelineStep

SP = ZoneInfo("America/Sao_Paulo")
A, B = uuid.uuid4(), uuid.uuid4()
DEPT, DEPT2, TAB = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
DAY = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)  # a Tuesday


def at(minutes: float, base: dt.datetime = DAY) -> dt.datetime:
    return base + dt.timedelta(minutes=minutes)


def ev(minute: float, kind: str, status: str, agent: uuid.UUID | None = None, **kw) -> TimelineStep:
    return TimelineStep(at=at(minute), kind=kind, status=status, agent_id=agent, **kw)


def msg_in(minute: float) -> TimelineStep:
    return TimelineStep(at=at(minute), kind=INBOUND)


def msg_out(minute: float, agent: uuid.UUID | None) -> TimelineStep:
    return TimelineStep(at=at(minute), kind=OUTBOUND, agent_id=agent)


def timeline(*steps: TimelineStep, assignee: uuid.UUID | None = A) -> ConversationTimeline:
    closes = [s.at for s in steps if s.kind in ("closed", "expired")]
    return ConversationTimeline(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        contact_id=uuid.uuid4(),
        channel_id=uuid.uuid4(),
        channel_type="fake",
        status="CLOSED",
        department_id=DEPT,
        assignee_id=assignee,
        tabulation_id=TAB,
        created_at=steps[0].at,
        closed_at=closes[-1] if closes else None,
        steps=tuple(steps),
    )


AROUND_THE_CLOCK = Calendar(SP)
TARGET = ReportsSettings().sla_target  # 900 s


def basic() -> ConversationTimeline:
    return timeline(
        ev(0, "opened", "PENDING"),
        msg_in(0),
        ev(5, "assigned", "ACTIVE", A),
        msg_out(7, A),
        msg_in(10),
        msg_out(12, A),
        ev(30, "closed", "CLOSED", A, tabulation_id=TAB),
    )


def test_every_time_on_a_plain_conversation() -> None:
    m = measure(basic(), AROUND_THE_CLOCK, TARGET)
    assert m is not None
    # waiting: queued (opened, PENDING) -> first assignment
    assert m.times["waiting_s"] == 5 * 60
    # first response: first customer message -> first agent message
    assert m.times["first_response_s"] == 7 * 60
    # handling: first agent message -> close
    assert m.times["handling_s"] == 23 * 60
    # duration: open -> close
    assert m.times["duration_s"] == 30 * 60
    # agent response per exchange: 0->7 and 10->12
    assert (m.response_count, m.response_sum_s) == (2, 9 * 60)
    assert (m.messages_in, m.messages_out, m.reopens, m.transfers) == (2, 2, 0, 0)
    assert m.sla_met is True  # 420 s <= 900 s
    # around the clock, business-hours times are the wall-clock ones
    assert all(m.times[f"{n}_bs"] == m.times[f"{n}_s"] for n in ("waiting", "handling"))
    assert m.agent_id == A and m.queued_at == at(0) and m.first_assigned_at == at(5)


def test_waiting_ends_at_the_first_agent_message_when_it_comes_before_an_assignment() -> None:
    m = measure(
        timeline(
            ev(0, "opened", "PENDING"),
            msg_in(0),
            msg_out(3, A),
            ev(4, "assigned", "ACTIVE", A),
            ev(10, "closed", "CLOSED", A),
        ),
        AROUND_THE_CLOCK,
        TARGET,
    )
    assert m is not None and m.times["waiting_s"] == 180


def test_an_agent_started_conversation_never_waited() -> None:
    m = measure(
        timeline(
            ev(0, "opened", "ACTIVE", A), msg_out(0, A), msg_in(4), ev(9, "closed", "CLOSED", A)
        ),
        AROUND_THE_CLOCK,
        TARGET,
    )
    assert m is not None
    assert m.times["waiting_s"] is None
    assert m.times["first_response_s"] is None  # the customer's message was never answered
    assert m.sla_met is False


def test_reopen_starts_an_episode_and_the_closed_gap_never_counts() -> None:
    steps = [s for s in basic().steps]
    steps += [
        ev(120, "reopened", "PENDING"),
        msg_in(120),
        ev(130, "assigned", "ACTIVE", A),
        msg_out(135, A),
        ev(140, "closed", "CLOSED", A),
    ]
    m = measure(timeline(*steps), AROUND_THE_CLOCK, TARGET)
    assert m is not None
    assert m.reopens == 1
    assert m.times["duration_s"] == (30 + 20) * 60  # both episodes, not the 90 closed minutes
    assert m.times["waiting_s"] == (5 + 10) * 60
    assert m.times["handling_s"] == (23 + 5) * 60
    assert m.times["first_response_s"] == 7 * 60  # the first episode's
    assert (m.response_count, m.response_sum_s) == (3, (7 + 2 + 15) * 60)
    assert m.closed_at == at(140) and m.opened_at == at(0)


def test_transfer_counts_once_and_the_closing_agent_owns_the_conversation() -> None:
    m = measure(
        timeline(
            ev(0, "opened", "PENDING"),
            msg_in(0),
            ev(2, "assigned", "ACTIVE", A),
            ev(10, "transferred", "PENDING", None, department_id=DEPT2),
            ev(20, "assigned", "ACTIVE", B),
            msg_out(25, B),
            ev(40, "closed", "CLOSED", B),
            assignee=B,
        ),
        AROUND_THE_CLOCK,
        TARGET,
    )
    assert m is not None
    assert m.transfers == 1
    assert m.times["waiting_s"] == 120  # the first wait; the transfer's requeue is handling
    assert m.times["first_response_s"] == 25 * 60
    assert m.sla_met is False  # 1500 s > 900 s
    assert m.agent_id == B


def test_automated_messages_answer_nobody() -> None:
    m = measure(
        timeline(
            ev(0, "opened", "BOT"),
            msg_in(0),
            msg_out(0.1, None),  # the bot
            ev(1, "transferred", "PENDING", None),
            ev(3, "assigned", "ACTIVE", A),
            msg_out(4, A),
            ev(6, "expired", "CLOSED", A),
        ),
        AROUND_THE_CLOCK,
        TARGET,
    )
    assert m is not None
    assert m.times["waiting_s"] == 120  # queued when the bot handed over, not at opening
    assert m.times["first_response_s"] == 240
    assert m.response_count == 1
    assert m.messages_out == 2


def test_open_conversations_have_no_figures() -> None:
    t = basic()
    open_one = ConversationTimeline(**{**t.__dict__, "status": "ACTIVE", "closed_at": None})
    assert measure(open_one, AROUND_THE_CLOCK, TARGET) is None


def test_sla_target_per_department() -> None:
    settings = ReportsSettings(sla_by_department={DEPT: 300})
    m = measure(basic(), AROUND_THE_CLOCK, settings.sla_target)
    assert m is not None and m.sla_met is False  # 420 s > 300 s for that department


# --- business hours (São Paulo, UTC-3 all year since 2019: no DST) ---------------------


def business(**kw: object) -> Calendar:
    hours = [{"start": "08:00", "end": "12:00"}, {"start": "13:00", "end": "18:00"}]
    settings = ReportsSettings(
        business_hours={d: hours for d in ("mon", "tue", "wed", "thu", "fri")}, **kw
    )
    return Calendar.of(settings)


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=SP)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (local(2026, 3, 10, 9), local(2026, 3, 10, 10), 3600),  # inside a window
        (local(2026, 3, 10, 11), local(2026, 3, 10, 14), 2 * 3600),  # over lunch
        (local(2026, 3, 10, 17), local(2026, 3, 11, 9), 2 * 3600),  # overnight
        (local(2026, 3, 13, 17, 50), local(2026, 3, 16, 8, 5), 15 * 60),  # Fri -> Mon
        (local(2026, 3, 14, 9), local(2026, 3, 15, 20), 0),  # a weekend
        (local(2026, 3, 10, 7), local(2026, 3, 10, 7, 30), 0),  # before opening
    ],
)
def test_business_seconds(start: dt.datetime, end: dt.datetime, expected: float) -> None:
    assert business().seconds(start, end) == expected


def test_holidays_are_closed() -> None:
    cal = business(holidays=[dt.date(2026, 3, 16)])
    assert cal.seconds(local(2026, 3, 13, 17, 50), local(2026, 3, 17, 8, 5)) == 15 * 60


def test_sao_paulo_is_utc_minus_three_all_year() -> None:
    for month in (1, 4, 7, 10, 12):  # no daylight saving: 8:00 local is 11:00 UTC
        assert local(2026, month, 5, 8).astimezone(dt.UTC).hour == 11


def test_business_variant_of_a_weekend_first_response() -> None:
    friday = local(2026, 3, 13, 17, 50).astimezone(dt.UTC)
    monday = local(2026, 3, 16, 8, 5).astimezone(dt.UTC)
    minutes = (monday - friday).total_seconds() / 60
    t = timeline(
        TimelineStep(at=friday, kind="opened", status="PENDING"),
        TimelineStep(at=friday, kind=INBOUND),
        TimelineStep(at=monday, kind="assigned", status="ACTIVE", agent_id=A),
        TimelineStep(at=monday, kind=OUTBOUND, agent_id=A),
        TimelineStep(at=monday + dt.timedelta(minutes=10), kind="closed", status="CLOSED"),
    )
    m = measure(t, business(), TARGET)
    assert m is not None
    assert m.times["first_response_s"] == minutes * 60
    assert m.times["first_response_bs"] == 15 * 60
    assert m.times["waiting_bs"] == 15 * 60
    assert m.times["duration_bs"] == 25 * 60
    assert m.sla_met is True  # SLA is judged in business hours: 900 s <= 900 s
