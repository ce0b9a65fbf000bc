"""X-Hub-Signature-256 over the raw bytes, against every shared vector, and the GET check."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from guiche_meta_cloud.signature import (
    check_signature,
    signature_valid,
    subscription_challenge,
)

from guiche.channels import WebhookAuthError
from tests.plugins.meta_cloud.conftest import META

VECTORS: dict[str, Any] = json.loads((META / "signature_vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_signature_vector(vector: dict[str, Any]) -> None:
    body = base64.b64decode(vector["body_base64"])
    assert hashlib.sha256(body).hexdigest() == vector["body_sha256"]
    assert body == vector["body"].encode()
    assert signature_valid(body, vector["header"], vector["app_secret"]) is vector["valid"], vector[
        "reason"
    ]
    if vector["valid"]:
        check_signature(body, vector["header"], vector["app_secret"])
    else:
        with pytest.raises(WebhookAuthError):
            check_signature(body, vector["header"], vector["app_secret"])


def test_vectors_cover_the_documented_cases() -> None:
    assert VECTORS["header_name"] == "X-Hub-Signature-256"
    assert sum(v["valid"] for v in VECTORS["vectors"]) >= 3
    assert sum(not v["valid"] for v in VECTORS["vectors"]) >= 7


def test_missing_header_and_missing_secret_are_refused() -> None:
    body = b"{}"
    with pytest.raises(WebhookAuthError, match="missing"):
        check_signature(body, None, "secret")
    with pytest.raises(WebhookAuthError, match="no app secret"):
        check_signature(body, "sha256=00", "")


def test_subscription_challenge_echoes_only_with_our_token() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"}
    assert subscription_challenge(query, "tok") == "1158201444"
    with pytest.raises(WebhookAuthError):
        subscription_challenge({**query, "hub.verify_token": "other"}, "tok")
    with pytest.raises(WebhookAuthError):
        subscription_challenge({**query, "hub.mode": "unsubscribe"}, "tok")
    with pytest.raises(WebhookAuthError):
        subscription_challenge(query, "")  # no verify token configured: never subscribe
