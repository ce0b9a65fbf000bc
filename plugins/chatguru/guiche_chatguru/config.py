"""The models a ChatGuru account is configured with.

Credentials (panel URL, login, session cookie, API key) are a channel's credentials:
core validates them on `POST /api/v1/channels`, stores them encrypted and shows them
masked. Per-company behaviour (time zone, poll interval, concurrency, request rate) is
the plugin's settings (`PUT /api/v1/plugins/chatguru`).
"""

from __future__ import annotations

import os
import zoneinfo
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ALLOW_ANY_HOST_ENV = "GUICHE_CHATGURU_ALLOW_ANY_HOST"
#: ChatGuru's panels live on `https://s<N>.chatguru.app`; nothing else is called unless
#: the operator allows any host (a test server, a proxy).
PANEL_DOMAIN = ".chatguru.app"
_TRUE = frozenset({"1", "true", "yes", "on"})


class OperatorSettings(BaseSettings):
    """The operator's environment for this plugin (listed in .env.example)."""

    model_config = SettingsConfigDict(extra="ignore")

    # "1": panel URLs outside *.chatguru.app (and plain http) are allowed (tests, proxies).
    allow_any_host: str = Field("", validation_alias=ALLOW_ANY_HOST_ENV)


def any_host_allowed() -> bool:
    """Read at call time, so tests and reloads see changes."""
    return os.environ.get(ALLOW_ANY_HOST_ENV, "").strip().lower() in _TRUE


def check_panel_url(url: str) -> str:
    """The panel's base URL without a trailing slash; a tenant-supplied URL is an SSRF
    vector, so only https://*.chatguru.app unless the operator allows any host."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("panel_url must be an http(s) URL such as https://s20.chatguru.app")
    if parts.path or parts.query or parts.fragment:
        raise ValueError("panel_url is the panel's base URL, without a path")
    if any_host_allowed():
        return url
    if parts.scheme != "https" or not parts.hostname.endswith(PANEL_DOMAIN):
        raise ValueError("panel_url must be https://<server>.chatguru.app")
    return url


class ChatGuruCredentials(BaseModel):
    """One ChatGuru account: how to reach its panel (login or a session cookie) and,
    optionally, its documented API (key, account id, phone id) for sends."""

    model_config = ConfigDict(extra="forbid")

    panel_url: str = Field(description="e.g. https://s20.chatguru.app")
    email: str | None = Field(None, max_length=320)
    password: SecretStr | None = None
    session_cookie: SecretStr | None = Field(
        None, description="the panel's `session` cookie value, instead of email + password"
    )
    api_key: SecretStr | None = None
    account_id: str | None = Field(None, max_length=64)
    phone_id: str | None = Field(None, max_length=64)

    @field_validator("panel_url")
    @classmethod
    def _panel_url(cls, value: str) -> str:
        return check_panel_url(value)

    @model_validator(mode="after")
    def _can_log_in(self) -> ChatGuruCredentials:
        has_login = bool(self.email and self.password and self.password.get_secret_value())
        has_cookie = bool(self.session_cookie and self.session_cookie.get_secret_value())
        if not (has_login or has_cookie):
            raise ValueError("give email and password, or a session_cookie")
        return self


class ChatGuruSettings(BaseModel):
    """Per-company behaviour of the cataloger and the poller."""

    model_config = ConfigDict(extra="forbid")

    time_zone: str = Field("America/Sao_Paulo", description="IANA zone the panel's dates use")
    poll_interval_seconds: Annotated[float, Field(ge=2.0, le=3600.0)] = 5.0
    concurrency: Annotated[int, Field(ge=1, le=32)] = 4
    requests_per_second: Annotated[float, Field(gt=0, le=100)] = 10.0

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value
