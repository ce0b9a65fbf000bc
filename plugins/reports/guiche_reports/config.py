"""Per-company settings: the time zone reports are dated in, business hours and holidays
(for the business-hours variant of every time), and the first-response SLA targets."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Window(BaseModel):
    """Opening hours within one day, local time: `start` included, `end` excluded."""

    model_config = ConfigDict(extra="forbid")

    start: dt.time
    end: dt.time

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError("end must be after start (windows stay within one day)")
        return self


class ReportsSettings(BaseModel):
    """Empty `business_hours` means open around the clock: business-hours times then equal
    wall-clock times (holidays still apply only when hours are set). `rates`: the company's
    per-country price table, `{"55": {"marketing": 0.0625, ...}}` in `rates_currency`,
    for usage the provider left unpriced."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "America/Sao_Paulo"
    business_hours: dict[Weekday, list[Window]] = Field(default_factory=dict)
    holidays: list[dt.date] = Field(default_factory=list)
    sla_first_response_seconds: int = Field(default=900, gt=0)
    sla_by_department: dict[uuid.UUID, int] = Field(default_factory=dict)
    rates: dict[str, dict[str, float]] = Field(default_factory=dict)
    rates_currency: str = Field(default="USD", min_length=3, max_length=3)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("sla_by_department")
    @classmethod
    def _positive_targets(cls, value: dict[uuid.UUID, int]) -> dict[uuid.UUID, int]:
        if any(seconds <= 0 for seconds in value.values()):
            raise ValueError("SLA targets are positive numbers of seconds")
        return value

    @field_validator("rates")
    @classmethod
    def _rate_table(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for prefix, prices in value.items():
            if not prefix.isdigit() or len(prefix) > 3:
                raise ValueError("rates are keyed by a country calling code (1-3 digits)")
            if any(price < 0 for price in prices.values()):
                raise ValueError("prices are not negative")
        return {p: {c.lower(): v for c, v in prices.items()} for p, prices in value.items()}

    def rate(self, phone_prefix: str, category: str) -> float | None:
        """The company's price for a category to a number starting with `phone_prefix`
        (the longest matching calling code wins)."""
        for length in (3, 2, 1):
            prices = self.rates.get(phone_prefix[:length]) if len(phone_prefix) >= length else None
            if prices is not None and category in prices:
                return prices[category]
        return None

    def sla_target(self, department_id: uuid.UUID | None) -> int:
        """The first-response target (seconds) of a department, else the company's."""
        if department_id is not None and department_id in self.sla_by_department:
            return self.sla_by_department[department_id]
        return self.sla_first_response_seconds
