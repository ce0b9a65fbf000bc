"""Settings read from the environment and validated once at start.

Each bad value is reported on one line naming the environment variable, so an
operator can fix a deployment without reading a traceback.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


class ConfigError(Exception):
    """Raised with one human line per invalid environment variable."""


class Settings(BaseSettings):
    """Every knob Guichê reads. Names map to `GUICHE_<FIELD>` unless an alias says otherwise."""

    model_config = SettingsConfigDict(env_prefix="GUICHE_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "GUICHE_DATABASE_URL")
    )
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "GUICHE_REDIS_URL")
    )
    task_queue: str = Field("guiche:tasks", min_length=1, max_length=200)
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # Where providers (webhooks) and people reach this Guichê: scheme://host[:port][/prefix].
    # Channel adapters get their webhook URL from it. Unset: http://<host>:<port>.
    public_url: str | None = None
    data_dir: Path = Path(".guiche")
    storage_path: Path | None = Field(
        None, validation_alias=AliasChoices("STORAGE_PATH", "GUICHE_STORAGE_PATH")
    )
    secret_key: SecretStr | None = None
    encryption_keys: CommaList = Field(default_factory=list)
    access_token_ttl_seconds: int = Field(900, ge=60, le=86400)
    refresh_token_ttl_days: int = Field(30, ge=1, le=365)
    login_max_attempts_per_ip: int = Field(20, ge=1)
    login_max_attempts_per_email: int = Field(5, ge=1)
    login_window_seconds: int = Field(900, ge=1)
    rate_limit_per_minute: int = Field(100, ge=0)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_import_bytes: int = Field(10_485_760, ge=1024)
    cors_origins: CommaList = Field(default_factory=list)
    # Proxies (IPs/CIDRs) whose X-Forwarded-For names the client; empty: trust none.
    trusted_proxies: CommaList = Field(default_factory=list)
    plugins_blocked: CommaList = Field(default_factory=list)
    default_region: str = Field("BR", min_length=2, max_length=2)
    log_level: str = "INFO"
    # JSON lines (true), human lines (false); unset: human on a terminal, JSON otherwise.
    log_json: bool | None = None
    # Concurrent webhooks share one transaction (guiche.inbound.coalesce): a lone one waits
    # at most this window; a transaction carries at most this many messages.
    ingest_coalesce_window_ms: float = Field(1.0, ge=0, le=100)
    ingest_coalesce_max_messages: int = Field(200, ge=1, le=100_000)
    event_hook_timeout_seconds: float = Field(5.0, gt=0, le=300)
    # Per-process cache of loaded channels and tenants' plugin settings (guiche.runtime.cache):
    # changes invalidate it at once (over Redis across processes); this bounds staleness
    # if a notice is lost. 0 disables it.
    channel_cache_ttl_seconds: float = Field(60.0, ge=0)
    demo_password: SecretStr | None = None
    db_pool_min: int = Field(1, ge=0)
    db_pool_max: int = Field(10, ge=1)
    # Seconds a starting process waits for an unreachable or restarting database.
    db_startup_wait_seconds: float = Field(60.0, ge=0)
    # Outbound sending (guiche.outbound): retries with full-jitter backoff, a lease per send.
    send_max_attempts: int = Field(8, ge=1, le=100)
    send_retry_base_seconds: float = Field(1.0, ge=0)
    send_retry_max_seconds: float = Field(300.0, ge=0)
    send_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    outbox_sweep_grace_seconds: float = Field(30.0, ge=0)
    idempotency_key_ttl_hours: int = Field(24, ge=1)
    # Dedup keys of provider message ids (guiche.inbound.key_retention): days kept after
    # their claim; 0 keeps them forever, else at least Meta's 7-day redelivery horizon.
    message_keys_retention_days: int = Field(30, ge=0)
    # Media: upload cap, what is sent inline (base64) to providers, and how long files live.
    max_media_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    media_inline_max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    media_retention_days: int = Field(90, ge=0)
    # The per-channel provider call log (guiche.provider_http.call_log): days kept.
    provider_call_retention_days: int = Field(7, ge=1, le=365)
    # WebSocket hub (per web process): connection cap, per-socket send queue, keepalive.
    ws_max_connections_per_tenant: int = Field(2000, ge=1)
    ws_send_queue_size: int = Field(1000, ge=1)
    ws_heartbeat_seconds: float = Field(30.0, gt=0)
    ws_auth_timeout_seconds: float = Field(10.0, gt=0)
    # Presence (guiche.routing.presence): an agent whose last socket closed is set offline
    # after this grace (a page reload is not leaving); a crashed process's agents after
    # at most one lease.
    presence_grace_seconds: float = Field(10.0, ge=0)
    presence_lease_seconds: float = Field(60.0, ge=3)
    # Garbage collector of every long-running process (guiche.foundation.gc_tuning): keep
    # start-up objects out of full collections; collect the youngest generation every this
    # many allocations (0: Python's default).
    gc_freeze: bool = True
    gc_threshold: int = Field(50_000, ge=0)

    @field_validator(
        "encryption_keys", "cors_origins", "plugins_blocked", "trusted_proxies", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """An origin is `scheme://host[:port]` (browsers send no path or trailing slash) or `*`."""
        origins = []
        for origin in value:
            origin = origin.rstrip("/")
            parts = urlsplit(origin)
            if origin != "*" and (
                parts.scheme not in ("http", "https") or not parts.netloc or parts.path
            ):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
            origins.append(origin)
        return origins

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_network(item, strict=False)) for item in value]
        except ValueError as exc:
            raise ValueError(f"not an IP address or CIDR network ({exc})") from None

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = value.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL, e.g. https://chat.example.com")
        return url

    @field_validator("database_url", "redis_url", "log_json", "public_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @field_validator("message_keys_retention_days")
    @classmethod
    def _past_redelivery(cls, value: int) -> int:
        if 0 < value < 7:
            raise ValueError("must be 0 (keep forever) or at least 7 (Meta redelivers for 7 days)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("default_region")
    @classmethod
    def _region_upper(cls, value: str) -> str:
        return value.upper()

    @property
    def base_url(self) -> str:
        """This Guichê's public address (`public_url`, else where it listens)."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def media_root(self) -> Path:
        return self.storage_path or self.data_dir / "storage"


def env_names(model: type[BaseSettings]) -> list[str]:
    """The environment variables a pydantic-settings model reads, one per field: its first
    validation alias, else the model's `env_prefix` + the field name, upper-cased."""
    prefix = str(model.model_config.get("env_prefix", ""))
    names = []
    for field, info in model.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.append(str(alias.choices[0]))
        elif isinstance(alias, str):
            names.append(alias)
        else:
            names.append(f"{prefix}{field}".upper())
    return names


def _env_name(field: str) -> str:
    if field.isupper():  # an aliased field is reported under the variable it was read from
        return field
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"GUICHE_{field.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; raise ConfigError with one line per bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            lines.append(f"{_env_name(field)}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
