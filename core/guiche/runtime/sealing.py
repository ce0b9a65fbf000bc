"""Secrets a plugin keeps at rest (a webhook's signing secret), encrypted the way core
keeps channel credentials: Fernet under `GUICHE_ENCRYPTION_KEYS` (the first key
encrypts, every one decrypts, so rotating the deployment's keys keeps them readable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guiche.foundation.crypto import CredentialCipher

if TYPE_CHECKING:
    from guiche.runtime.services import Services


def seal_secret(services: Services, value: str) -> str:
    """`value` encrypted (text, safe to store)."""
    return CredentialCipher(services.settings.encryption_keys).encrypt({"v": value})


def open_secret(services: Services, token: str) -> str:
    """A value from `seal_secret`; raises if no configured key can read it."""
    return str(CredentialCipher(services.settings.encryption_keys).decrypt(token).get("v", ""))
