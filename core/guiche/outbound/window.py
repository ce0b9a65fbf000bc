"""The customer-care window: free-form messages only within 24 h of the customer's last one.

Checked when the message is created, so the agent learns at once (422) that a template
is needed, instead of the provider failing the send minutes later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from guiche.channels import CAP_CUSTOMER_CARE_WINDOW, CUSTOMER_CARE_WINDOW
from guiche.foundation.errors import ValidationFailed


def window_open(last_inbound_at: dt.datetime | None, now: dt.datetime) -> bool:
    return last_inbound_at is not None and now - last_inbound_at < CUSTOMER_CARE_WINDOW


def check_window(
    capabilities: Collection[str],
    kind: str,
    last_inbound_at: dt.datetime | None,
    now: dt.datetime,
) -> None:
    """Raise 422 `outside_customer_care_window` for a non-template send outside the window."""
    if CAP_CUSTOMER_CARE_WINDOW not in capabilities or kind == "template":
        return
    if window_open(last_inbound_at, now):
        return
    hours = int(CUSTOMER_CARE_WINDOW.total_seconds() // 3600)
    raise ValidationFailed(
        f"The customer has not written in the last {hours} hours: this channel only allows "
        'an approved template now. Send {"type": "template", ...} instead.',
        code="outside_customer_care_window",
        details={
            "last_inbound_at": last_inbound_at.isoformat() if last_inbound_at else None,
            "window_hours": hours,
            "allowed_types": ["template"],
        },
    )
