"""Business hours: how many seconds of an interval fall inside a company's opening hours.

Windows are local times of the company's zone on each weekday, minus holidays; every
sum is taken on UTC instants, so a zone with daylight saving counts real seconds.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from guiche_reports.config import WEEKDAYS, ReportsSettings

_UTC = dt.UTC


class Calendar:
    """A company's clock: its zone, weekly windows (by `date.weekday()`) and holidays."""

    def __init__(
        self,
        zone: ZoneInfo,
        weekly: dict[int, list[tuple[dt.time, dt.time]]] | None = None,
        holidays: frozenset[dt.date] = frozenset(),
    ) -> None:
        self.zone = zone
        self.weekly = {day: windows for day, windows in (weekly or {}).items() if windows}
        self.holidays = holidays

    @classmethod
    def of(cls, settings: ReportsSettings) -> Calendar:
        weekly = {
            WEEKDAYS.index(day): [(w.start, w.end) for w in windows]
            for day, windows in settings.business_hours.items()
        }
        return cls(ZoneInfo(settings.timezone), weekly, frozenset(settings.holidays))

    @property
    def around_the_clock(self) -> bool:
        return not self.weekly

    def local(self, at: dt.datetime) -> dt.datetime:
        return at.astimezone(self.zone)

    def seconds(self, start: dt.datetime, end: dt.datetime) -> float:
        """Business seconds between two instants (0 when `end` is not after `start`)."""
        if end <= start:
            return 0.0
        if self.around_the_clock:
            return (end - start).total_seconds()
        total = 0.0
        day = self.local(start).date()
        last = self.local(end).date()
        while day <= last:
            if day not in self.holidays:
                for opens, closes in self.weekly.get(day.weekday(), ()):
                    lo = max(dt.datetime.combine(day, opens, tzinfo=self.zone), start)
                    hi = min(dt.datetime.combine(day, closes, tzinfo=self.zone), end)
                    if hi > lo:
                        total += (hi.astimezone(_UTC) - lo.astimezone(_UTC)).total_seconds()
            day += dt.timedelta(days=1)
        return total
