"""Meta's webhook authentication: `X-Hub-Signature-256` on POSTs, the `hub.*` GET check.

The HMAC is over the raw request bytes exactly as received: Meta escapes non-ASCII and
`/`, so re-serialising parsed JSON gives other bytes and a false mismatch.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from guiche.channels import WebhookAuthError

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def expected_signature(body: bytes, app_secret: str) -> str:
    return _PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(body: bytes, header: str | None, app_secret: str) -> bool:
    """True only for `sha256=<hex of HMAC-SHA256(app_secret, body)>`, compared in constant time."""
    if not header or not app_secret or not header.startswith(_PREFIX):
        return False
    return hmac.compare_digest(
        header.strip().lower().encode(), expected_signature(body, app_secret).encode()
    )


def check_signature(body: bytes, header: str | None, app_secret: str) -> None:
    """Raise `WebhookAuthError` (core answers 401, stores nothing) unless the body is Meta's."""
    if not app_secret:
        raise WebhookAuthError("no app secret configured for this webhook")
    if not header:
        raise WebhookAuthError(f"missing {SIGNATURE_HEADER}")
    if not signature_valid(body, header, app_secret):
        raise WebhookAuthError(f"invalid {SIGNATURE_HEADER}")


def subscription_challenge(query: Mapping[str, str], verify_token: str) -> str:
    """The `hub.challenge` to echo when Meta's GET carries our verify token, else refuse."""
    mode = query.get("hub.mode", "")
    token = query.get("hub.verify_token", "")
    if mode != "subscribe" or not verify_token:
        raise WebhookAuthError("not a subscription request")
    if not hmac.compare_digest(token.encode(), verify_token.encode()):
        raise WebhookAuthError("wrong verify token")
    return query.get("hub.challenge", "")
