"""Encrypting channel credentials at rest, with key rotation, and masking them for display.

`GUICHE_ENCRYPTION_KEYS` is a comma-separated list of Fernet keys: the first encrypts,
every one decrypts. Rotating means putting a new key first and keeping the old ones
until `rotate()` has re-encrypted the stored values.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from guiche.config import ConfigError

MASK = "****"


class CredentialsUnreadable(Exception):
    """No configured key decrypts a stored value (a key was removed too early)."""


class CredentialCipher:
    """Encrypts JSON objects to Fernet tokens (text) and back."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigError(
                "GUICHE_ENCRYPTION_KEYS: required to store channel credentials; generate one "
                "with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`"
            )
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip().encode()))
            except (ValueError, binascii.Error):
                raise ConfigError(
                    f"GUICHE_ENCRYPTION_KEYS: key #{position} is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes)"
                ) from None
        self._fernet = MultiFernet(fernets)

    def encrypt(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(orjson.dumps(data)).decode()

    def decrypt(self, token: str) -> dict[str, Any]:
        if not token:
            return {}
        try:
            plain = self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise CredentialsUnreadable(
                "stored credentials cannot be decrypted with any configured key"
            ) from None
        data = orjson.loads(plain)
        return data if isinstance(data, dict) else {}

    def rotate(self, token: str) -> str:
        """The same value re-encrypted under the first (newest) key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise CredentialsUnreadable(
                "stored credentials cannot be decrypted with any configured key"
            ) from None


def mask_value(value: Any) -> Any:
    """Enough of a secret to recognise it ("****1234"), never enough to use it."""
    if isinstance(value, dict):
        return {key: mask_value(item) for key, item in value.items()}
    if value is None:
        return None
    if isinstance(value, str) and len(value) >= 8:
        return MASK + value[-4:]
    return MASK


def mask_credentials(data: dict[str, Any]) -> dict[str, Any]:
    return {key: mask_value(value) for key, value in data.items()}


def reveal_secrets(value: Any) -> Any:
    """Secret fields as their real values: what gets encrypted, not '**********'."""
    from pydantic import SecretBytes, SecretStr

    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, SecretBytes):
        return value.get_secret_value().decode()
    if isinstance(value, dict):
        return {key: reveal_secrets(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [reveal_secrets(item) for item in value]
    return value


def credentials_to_store(model: Any) -> dict[str, Any]:
    """A validated credentials model as the plain dict we encrypt (secrets revealed)."""
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(reveal_secrets(model.model_dump(mode="python", by_alias=True)))
