"""An Evolution channel's credentials and options (validated by core, stored encrypted).

`webhook_secret` and `instance_token` are generated here when missing, so they are
stored with the channel on creation and survive later edits (core merges edits into
the stored values). The secret is what authenticates Evolution's webhooks: Evolution
sends it back in a header we configure, because the body's own `apikey` is often null.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from guiche_evolution.netpolicy import ALLOW_PRIVATE_ENV, TargetNotAllowed, check_url_syntax

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"


class OperatorSettings(BaseSettings):
    """The operator's environment for this plugin (declared in `PluginInfo`, listed in
    .env.example); read where used, at call time, so tests and reloads see changes."""

    model_config = SettingsConfigDict(extra="ignore")

    # "1", "true", "yes" or "on" (anything else: off); netpolicy reads it per call.
    allow_private: str = Field("", validation_alias=ALLOW_PRIVATE_ENV)


InstanceName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    ),
]


def _new_secret() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(32))


def _new_instance_token() -> SecretStr:
    return SecretStr(secrets.token_hex(16).upper())


def _clean_url(value: str) -> str:
    url = value.strip().rstrip("/")
    try:
        check_url_syntax(url)
    except TargetNotAllowed as exc:
        raise ValueError(str(exc)) from None
    return url


class EvolutionConfig(BaseModel):
    """What a company enters to connect its Evolution API v2 server."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    server_url: str = Field(
        description="Base URL of the Evolution API v2 server, e.g. https://evo.example.com",
        max_length=500,
    )
    api_key: SecretStr = Field(
        description="Evolution's global API key (AUTHENTICATION_API_KEY), or the instance's "
        "own key when the instance already exists"
    )
    instance_name: InstanceName = Field(description="Name of the Evolution instance to use")
    reject_groups: bool = Field(True, description="Ignore WhatsApp group messages")
    always_online: bool = Field(False, description="Show the number as always online")
    read_receipts: bool = Field(False, description="Mark incoming messages as read on arrival")
    public_base_url: str | None = Field(
        None,
        max_length=500,
        description="How Evolution reaches Guichê (defaults to the operator's GUICHE_PUBLIC_URL)",
    )
    webhook_secret: SecretStr = Field(
        default_factory=_new_secret,
        description="Sent back by Evolution in a header on every webhook; generated",
    )
    instance_token: SecretStr = Field(
        default_factory=_new_instance_token,
        description="The token the instance is created with (Evolution's instance apikey)",
    )

    @field_validator("server_url")
    @classmethod
    def _server_url(cls, value: str) -> str:
        return _clean_url(value)

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        url = value.strip().rstrip("/")
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError("only http:// and https:// URLs are allowed")
        return url

    @field_validator("webhook_secret", "instance_token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    def webhook_base(self, guiche_url: str) -> str:
        """Where Evolution posts: the channel's override, else Guichê's public URL (core's
        `GUICHE_PUBLIC_URL`, given to the adapter as `ChannelInfo.public_url`)."""
        base = self.public_base_url or guiche_url or DEFAULT_PUBLIC_URL
        return base.strip().rstrip("/")

    def accepted_body_keys(self) -> tuple[str, ...]:
        """Values a webhook body's `apikey` may carry (the instance token, or our key)."""
        return (self.instance_token.get_secret_value(), self.api_key.get_secret_value())
