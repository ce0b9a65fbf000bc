"""Cost estimates for the `pricing` block of Meta's status webhooks.

Current payloads price per message (`pricing_model` PMP, with `type` regular or free_*);
older ones (CBP) price per conversation and repeat the block on every message of it, so
a CBP estimate counts each message: dashboards group those by `conversation_id`.
Meta's invoice is the truth; these numbers are for trends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guiche.channels import Pricing


def parse_pricing(status: Mapping[str, Any]) -> Pricing | None:
    """The status's pricing (and legacy conversation object), without a cost yet."""
    pricing = status.get("pricing")
    if not isinstance(pricing, Mapping):
        return None
    conversation = status.get("conversation")
    conversation = conversation if isinstance(conversation, Mapping) else {}
    origin = conversation.get("origin")
    billable = pricing.get("billable")
    if str(pricing.get("type", "")).startswith("free"):
        billable = False
    return Pricing(
        billable=bool(billable) if billable is not None else None,
        pricing_model=_text(pricing.get("pricing_model")),
        category=_text(pricing.get("category")),
        conversation_id=_text(conversation.get("id")),
        conversation_origin=_text(origin.get("type")) if isinstance(origin, Mapping) else None,
    )


def estimate(pricing: Pricing, prices: Mapping[str, float], currency: str) -> Pricing:
    """`pricing` with a cost from the price table: 0 when not billable, None when unknown."""
    if pricing.billable is False:
        return pricing.model_copy(update={"cost": 0.0, "currency": currency})
    price = prices.get((pricing.category or "").lower())
    if price is None:
        return pricing.model_copy(update={"currency": currency})
    return pricing.model_copy(update={"cost": float(price), "currency": currency})


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
