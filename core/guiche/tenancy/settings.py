"""A company's own settings (`tenants.settings`): one validated model, read leniently.

Writes are strict (unknown keys and bad values are refused), reads are forgiving (a key
this version does not know, or a value an older version allowed, falls back to its
default) so one odd row never breaks a company's requests.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
import zoneinfo
from typing import Any, Literal

import orjson
import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from guiche.foundation.jsonio import validate_strict
from guiche.models import Tenant

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class OpeningHours(BaseModel):
    """One open interval of a day, in the company's timezone."""

    model_config = ConfigDict(extra="forbid")

    start: dt.time
    end: dt.time

    @model_validator(mode="after")
    def _ordered(self) -> OpeningHours:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_region: str | None = Field(
        None, description="ISO region for reading local phone numbers; deployment default if null"
    )
    timezone: str = "America/Sao_Paulo"
    business_hours: dict[Weekday, list[OpeningHours]] = Field(
        default_factory=dict, description="Open intervals per weekday; empty means always open"
    )
    auto_close_hours: int = Field(24, ge=1, le=720)
    max_concurrent_chats_default: int = Field(5, ge=0, le=100)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}")
        return region

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value not in _timezones():
            raise ValueError(f"unknown timezone {value!r}")
        return value


def _as_dict(raw: Any) -> dict[str, Any]:
    value = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return dict(value) if isinstance(value, dict) else {}


def read_settings(raw: Any) -> TenantSettings:
    """Stored settings as the model; unknown keys and invalid values fall back to defaults."""
    data = {k: v for k, v in _as_dict(raw).items() if k in TenantSettings.model_fields}
    while True:
        try:
            return TenantSettings.model_validate(data)
        except ValidationError as exc:
            bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
            if not bad & data.keys():
                return TenantSettings()
            data = {k: v for k, v in data.items() if k not in bad}


def merge_settings(raw: Any, patch: dict[str, Any]) -> tuple[TenantSettings, dict[str, Any]]:
    """Apply `patch` (a null value resets that key to its default) to the stored settings.

    Returns the validated model and the dict to store (only explicitly set keys, so
    changing a default later reaches companies that never chose a value). Raises
    pydantic's ValidationError for unknown keys or bad values.
    """
    current = read_settings(raw).model_dump(mode="json", exclude_unset=True)
    merged = {**current, **patch}
    fields = TenantSettings.model_fields
    merged = {k: v for k, v in merged.items() if not (v is None and k in fields)}
    model = validate_strict(TenantSettings, merged)
    return model, model.model_dump(mode="json", exclude_unset=True)


async def load_tenant_settings(tenant_id: uuid.UUID) -> TenantSettings:
    """A company's settings with defaults filled in (defaults when the company is unknown)."""
    row = await Tenant.select(Tenant.settings).where(Tenant.id == tenant_id).first()
    return read_settings(row["settings"] if row else None)
