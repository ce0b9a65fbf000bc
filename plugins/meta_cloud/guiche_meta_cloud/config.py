"""What an operator configures: a channel's credentials, and the app-level webhook settings.

`MetaCloudConfig` is the channel's credentials model (validated and stored encrypted by
core). `AppWebhookSettings` comes from the environment: one Meta app serving many
tenants' numbers (a Tech Provider setup) has one app secret and one verify token for
the whole installation, so they are operator settings, not any tenant's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_GRAPH_BASE_URL = "https://graph.facebook.com"
#: Graph API version used for sends, media and templates (v26.0: July 2026, current).
DEFAULT_GRAPH_API_VERSION = "v26.0"
#: Meta's default per-number throughput; numbers Meta has upgraded reach 1000.
DEFAULT_THROUGHPUT = 80.0
MAX_THROUGHPUT = 1000.0

#: USD per delivered billable message by pricing category: Meta's Brazil rates
#: (January 2026). Estimates for dashboards only: set the rates of your market.
DEFAULT_PRICES: dict[str, float] = {
    "marketing": 0.0625,
    "utility": 0.0068,
    "authentication": 0.0068,
    "service": 0.0,
}

GraphId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{5,32}$")]


class MetaCloudConfig(BaseModel):
    """One WhatsApp Business phone number on the Cloud API."""

    model_config = ConfigDict(extra="forbid")

    phone_number_id: GraphId = Field(description="Phone number ID (WhatsApp Manager / API Setup)")
    waba_id: GraphId = Field(description="WhatsApp Business Account ID (owns the templates)")
    access_token: SecretStr = Field(description="System-user access token with whatsapp_*")
    app_secret: SecretStr | None = Field(
        None,
        description="The Meta app's secret, to verify X-Hub-Signature-256 on this channel's "
        "webhook URL (not needed when the app-level webhook is used)",
    )
    verify_token: SecretStr | None = Field(
        None, description="Any string; paste the same into Meta's webhook 'Verify token'"
    )
    graph_api_version: Annotated[str, StringConstraints(pattern=r"^v[0-9]{1,3}\.[0-9]$")] = (
        DEFAULT_GRAPH_API_VERSION
    )
    graph_base_url: str = Field(
        DEFAULT_GRAPH_BASE_URL,
        description="Graph API origin; point it at an egress proxy or a fake in tests",
    )
    throughput_per_second: float = Field(DEFAULT_THROUGHPUT, gt=0, le=MAX_THROUGHPUT)
    media_download: Literal["on_access", "eager"] = Field(
        "on_access",
        description="Fetch inbound media when first opened (default) or right after it arrives",
    )
    prices: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="Pricing category -> cost per billable message, for cost estimates",
    )
    price_currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"

    @field_validator("graph_base_url")
    @classmethod
    def _origin(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")) or " " in value:
            raise ValueError("must be an http(s) URL such as https://graph.facebook.com")
        return value

    @field_validator("prices")
    @classmethod
    def _lower_keys(cls, value: dict[str, float]) -> dict[str, float]:
        return {key.strip().lower(): price for key, price in value.items()}

    def graph_url(self, path: str) -> str:
        return f"{self.graph_base_url}/{self.graph_api_version}/{path.lstrip('/')}"

    def secret(self, name: Literal["access_token", "app_secret", "verify_token"]) -> str:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else ""


class AppWebhookSettings(BaseSettings):
    """`GUICHE_META_APP_SECRET` and `GUICHE_META_VERIFY_TOKEN` for `/webhooks/meta_cloud/app`.

    Read per request (cheap), so a restart is not needed after setting them and tests
    can set them with monkeypatch. Unset secret = the app-level webhook is off.
    """

    model_config = SettingsConfigDict(env_prefix="GUICHE_META_", extra="ignore")

    app_secret: SecretStr | None = None
    verify_token: SecretStr | None = None
    #: How long the phone_number_id -> channel map is trusted before a reload.
    directory_ttl_seconds: float = Field(30.0, ge=0, le=3600)
