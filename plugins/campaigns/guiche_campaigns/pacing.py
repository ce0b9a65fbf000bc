"""When a campaign may send: the jittered gap between sends and the weekly send window.

Pure functions of their inputs (the clock is passed in), so windows are tested with a
fake clock and the engine stays a loop.
"""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SendWindow(BaseModel):
    """Sends happen only on `days` between `start` and `end` (company time zone)."""

    model_config = ConfigDict(extra="forbid")

    days: list[str] = Field(default_factory=lambda: list(DAYS[:5]), min_length=1)
    start: dt.time = dt.time(9, 0)
    end: dt.time = dt.time(18, 0)

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        days = [day.lower()[:3] for day in value]
        unknown = [day for day in days if day not in DAYS]
        if unknown:
            raise ValueError(f"unknown days {unknown}; use {list(DAYS)}")
        return sorted(set(days), key=DAYS.index)

    @model_validator(mode="after")
    def _order(self) -> SendWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


def in_window(window: SendWindow | None, now: dt.datetime, timezone: str) -> bool:
    """True when `now` (aware) falls inside the window in the company's time zone."""
    if window is None:
        return True
    local = now.astimezone(ZoneInfo(timezone))
    return DAYS[local.weekday()] in window.days and window.start <= local.time() < window.end


def next_opening(window: SendWindow, now: dt.datetime, timezone: str) -> dt.datetime:
    """The next moment (aware, UTC) the window opens, `now` itself when it is open."""
    if in_window(window, now, timezone):
        return now
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    for offset in range(8):
        day = local.date() + dt.timedelta(days=offset)
        if DAYS[day.weekday()] not in window.days:
            continue
        opening = dt.datetime.combine(day, window.start, tzinfo=zone)
        if opening > local:
            return opening.astimezone(dt.UTC)
    return now + dt.timedelta(days=7)  # not reachable: a valid window opens every week


def gap_seconds(rate_per_minute: float, jitter: float, rng: random.Random | None = None) -> float:
    """Seconds until the next send: the base gap scaled by a uniform factor in
    [1 - jitter, 1 + jitter], so the mean rate holds while the rhythm never repeats."""
    base = 60.0 / rate_per_minute
    factor = 1.0 + (rng or random).uniform(-jitter, jitter) if jitter else 1.0
    return base * factor
