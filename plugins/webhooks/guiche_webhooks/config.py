"""Settings: each company's delivery knobs, and the operator's network policy."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ALLOWED_NETWORKS_ENV = "GUICHE_WEBHOOKS_ALLOWED_NETWORKS"
ALLOW_HTTP_ENV = "GUICHE_WEBHOOKS_ALLOW_HTTP"

_TRUE = frozenset({"1", "true", "yes", "on"})


class WebhooksSettings(BaseModel):
    """Per company (`PUT /api/v1/plugins/webhooks {"settings": ...}`)."""

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(100, ge=1, le=1000, description="Events per POST, at most.")
    retry_hours: float = Field(
        24, gt=0, le=24 * 7, description="How long a failing endpoint is retried before pausing."
    )
    timeout_seconds: float = Field(10, gt=0, le=30, description="Per POST.")
    log_retention_days: int = Field(7, ge=1, le=90, description="Delivery log kept this long.")
    secret_overlap_hours: float = Field(
        24, ge=0, le=24 * 7, description="After a rotation, the old secret also signs this long."
    )


class OperatorSettings(BaseSettings):
    """The operator's environment (declared in `PluginInfo`, listed in .env.example),
    read at call time so tests and reloads see changes."""

    model_config = SettingsConfigDict(extra="ignore")

    # Comma-separated CIDRs receivers may be in although not public (e.g. "10.1.0.0/16";
    # "127.0.0.1/32" in tests only). Metadata addresses are refused whatever this says.
    allowed_networks: str = Field("", validation_alias=ALLOWED_NETWORKS_ENV)
    # "1"/"true": plain http:// URLs are accepted (https only otherwise).
    allow_http: str = Field("", validation_alias=ALLOW_HTTP_ENV)


def allowed_networks_value() -> str:
    return os.environ.get(ALLOWED_NETWORKS_ENV, "")


def http_allowed() -> bool:
    return os.environ.get(ALLOW_HTTP_ENV, "").strip().lower() in _TRUE
