"""Per-company settings of the campaigns plugin."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field

from guiche.plugin import tenant_plugin_context

DEFAULT_KEYWORDS = ["SAIR", "PARAR", "STOP", "CANCELAR"]


class CampaignSettings(BaseModel):
    """`opt_out_keywords`: a whole inbound message equal to one of these (any case or
    accents) opts the contact out on that channel and gets `opt_out_reply`.
    `channel_rate_per_minute`: the budget all campaigns on one channel share (0: none).
    Warm-up: a channel younger than `warmup_days` sends at most `warmup_first_day_cap`
    campaign messages on its first day, doubling each day (0 days: no ramp)."""

    opt_out_keywords: list[str] = Field(default_factory=lambda: list(DEFAULT_KEYWORDS))
    opt_out_reply: str = Field(
        "Pronto! Você não receberá mais nossas campanhas neste número.", max_length=1000
    )
    channel_rate_per_minute: float = Field(60.0, ge=0, le=60_000)
    warmup_days: int = Field(0, ge=0, le=60)
    warmup_first_day_cap: int = Field(50, ge=1)


async def load_settings(services: Any, tenant_id: uuid.UUID) -> CampaignSettings | None:
    """The company's settings, None when it has not enabled the plugin."""
    ctx = await tenant_plugin_context(services, tenant_id, "campaigns")
    return None if ctx is None else ctx.settings
