"""The channel's settings (per channel, stored encrypted by core) and the operator's
environment (deployment-wide)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CHANNEL_TYPE = "baileys"


class BaileysConfig(BaseModel):
    """What a company chooses for one WhatsApp Web number. Nothing secret: the session's
    keys live in the plugin's own table, encrypted, never in the channel's config."""

    model_config = ConfigDict(extra="forbid")

    #: Group chats become conversations (one per group); off by default.
    accept_groups: bool = False
    #: Log in with an 8-character pairing code sent to this phone instead of a QR.
    pairing_phone: str | None = Field(None, pattern=r"^\+?\d{10,15}$")
    #: Minimum gap between two sends of this number, plus up to `jitter_ms` at random:
    #: WhatsApp bans numbers that send like a machine.
    pace_ms: int = Field(1500, ge=0, le=60_000)
    jitter_ms: int = Field(1500, ge=0, le=60_000)
    #: A session that says "open" but received nothing for this long is reconnected.
    watchdog_minutes: int = Field(10, ge=1, le=24 * 60)
    #: Ask WhatsApp for the chat history when the phone is linked (stored, not notified).
    sync_history: bool = False

    def sidecar_options(self) -> dict[str, object]:
        return {
            "pace_ms": self.pace_ms,
            "jitter_ms": self.jitter_ms,
            "watchdog_ms": self.watchdog_minutes * 60_000,
            "sync_history": self.sync_history,
            "pairing_phone": self.pairing_phone,
        }


def _default_sidecar_dir() -> str:
    """The sidecar beside the package in a source checkout (the wheel does not ship it)."""
    return str(Path(__file__).resolve().parents[1] / "sidecar")


class OperatorSettings(BaseSettings):
    """The operator's environment (listed in .env.example); read when the service starts."""

    model_config = SettingsConfigDict(extra="ignore")

    #: Where the sidecar (package.json, src/server.js) lives; `npm ci` must have run there.
    sidecar_dir: str = Field(
        default_factory=_default_sidecar_dir, validation_alias="GUICHE_BAILEYS_SIDECAR_DIR"
    )
    #: An already running sidecar to use instead of starting one (`host:port`).
    sidecar_address: str = Field("", validation_alias="GUICHE_BAILEYS_SIDECAR_ADDRESS")
    #: Its shared secret (with `sidecar_address`; a started sidecar gets a fresh one).
    sidecar_secret: str = Field("", validation_alias="GUICHE_BAILEYS_SIDECAR_SECRET")
    #: Where a started sidecar listens, and the host other processes reach it by.
    listen_host: str = Field("127.0.0.1", validation_alias="GUICHE_BAILEYS_LISTEN_HOST")
    advertise_host: str = Field("", validation_alias="GUICHE_BAILEYS_ADVERTISE_HOST")
    node: str = Field("node", validation_alias="GUICHE_BAILEYS_NODE")
    #: How long a session's lease lasts without renewal (a dead holder's sessions move
    #: after this).
    lease_seconds: float = Field(30.0, ge=3, validation_alias="GUICHE_BAILEYS_LEASE_SECONDS")
    #: How often the service looks for channels to start or stop.
    poll_seconds: float = Field(3.0, gt=0, validation_alias="GUICHE_BAILEYS_POLL_SECONDS")
