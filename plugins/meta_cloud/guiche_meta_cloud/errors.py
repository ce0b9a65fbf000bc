"""Graph API errors → the channel contract's typed errors, decided by `error.code`.

The HTTP status differs between Graph versions for the same error (code 4 is 400 or
429), so the code decides; the status only matters when the body is not a Graph error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from guiche.channels import ChannelError, PermanentSendError, RetryableSendError

#: Throttling and transient codes → seconds to wait when Graph gives no hint.
RETRYABLE_CODES: Mapping[int, float] = {
    1: 5.0,  # API unknown (transient)
    2: 5.0,  # API service (temporary)
    4: 60.0,  # application request limit (rolling hourly window)
    80007: 60.0,  # WABA rate limit
    130429: 2.0,  # per-number throughput reached
    131000: 5.0,  # something went wrong (Meta: retry)
    131016: 10.0,  # service temporarily unavailable
    131056: 6.0,  # pair rate limit: ~1 message per 6 s to one user
    133004: 10.0,  # server temporarily unavailable
}
DEFAULT_TRANSIENT_WAIT = 5.0

#: Codes that mean the channel itself is broken (credentials), not just this message.
UNHEALTHY_CODES: Mapping[int, str] = {
    190: "Meta rejected the access token (expired or revoked): update the channel's "
    "access_token with a valid system-user token",
}

#: Well-known permanent codes, for clearer messages (any other 4xx is permanent too).
PERMANENT_REASONS: Mapping[int, str] = {
    100: "invalid parameter",
    131026: "message undeliverable (the number may not be on WhatsApp)",
    131047: "more than 24 hours since the customer's last message: send a template",
    131051: "unsupported message type",
}


def graph_error_body(content: bytes) -> Mapping[str, Any] | None:
    """The `error` object of a Graph response body, if it has one."""
    try:
        data = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, Mapping) else None
    return error if isinstance(error, Mapping) else None


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` seconds, else `X-Business-Use-Case-Usage`'s minutes to regain access."""
    lowered = {key.lower(): value for key, value in headers.items()}
    value = lowered.get("retry-after")
    if value:
        try:
            seconds = float(value)
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
        except ValueError:
            pass
    usage = lowered.get("x-business-use-case-usage")
    if usage:
        try:
            data = orjson.loads(usage)
        except orjson.JSONDecodeError:
            return None
        minutes = [
            item.get("estimated_time_to_regain_access") or 0
            for items in (data.values() if isinstance(data, Mapping) else [])
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, Mapping)
        ]
        longest = max((m for m in minutes if isinstance(m, int | float)), default=0)
        if longest > 0:
            return float(longest) * 60.0
    return None


def map_graph_error(
    status: int, content: bytes, headers: Mapping[str, str] | None = None
) -> ChannelError:
    """The typed error for a failed Graph call (never returns a success)."""
    headers = headers or {}
    error = graph_error_body(content)
    hinted = retry_after_from_headers(headers)
    if error is None:
        if status == 429 or status >= 500:
            return RetryableSendError(
                f"Graph API answered HTTP {status}",
                retry_after=_or(hinted, DEFAULT_TRANSIENT_WAIT),
                code=f"http_{status}",
                details={"http_status": status},
            )
        return PermanentSendError(
            f"Graph API answered HTTP {status}",
            code=f"http_{status}",
            details={"http_status": status, "body": content[:500].decode(errors="replace")},
        )
    code = _int(error.get("code"))
    data = error.get("error_data") if isinstance(error.get("error_data"), Mapping) else {}
    message = str(data.get("details") or error.get("message") or "Graph API error")
    details = {
        "graph_code": code,
        "graph_message": error.get("message"),
        "error_subcode": error.get("error_subcode"),
        "fbtrace_id": error.get("fbtrace_id"),
        "http_status": status,
    }
    details = {key: value for key, value in details.items() if value is not None}
    text_code = str(code) if code is not None else f"http_{status}"
    if code in UNHEALTHY_CODES:
        return PermanentSendError(
            UNHEALTHY_CODES[code], code=text_code, details=details, channel_unhealthy=True
        )
    if code in RETRYABLE_CODES:
        return RetryableSendError(
            message, retry_after=_or(hinted, RETRYABLE_CODES[code]), code=text_code, details=details
        )
    if error.get("is_transient") is True or status >= 500:
        return RetryableSendError(
            message,
            retry_after=_or(hinted, DEFAULT_TRANSIENT_WAIT),
            code=text_code,
            details=details,
        )
    reason = PERMANENT_REASONS.get(code or 0)
    if reason is None and code is not None and 132000 <= code < 133000:
        reason = "template error"
    return PermanentSendError(
        f"{reason}: {message}" if reason else message, code=text_code, details=details
    )


def _or(hinted: float | None, default: float) -> float:
    """Graph's own hint (even 0: retry at once) over our per-code default."""
    return hinted if hinted is not None else default


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
