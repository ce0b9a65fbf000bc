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
    wall-clock times (holidays still apply only when hours are set)."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "America/Sao_Paulo"
    business_hours: dict[Weekday, list[Window]] = Field(default_factory=dict)
    holidays: list[dt.date] = Field(default_factory=list)
    sla_first_response_seconds: int = Field(default=900, gt=0)
    sla_by_department: dict[uuid.UUID, int] = Field(default_factory=dict)

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

    def sla_target(self, department_id: uuid.UUID | None) -> int:
        """The first-response target (seconds) of a department, else the company's."""
        if department_id is not None and department_id in self.sla_by_department:
            return self.sla_by_department[department_id]
        return self.sla_first_response_seconds
