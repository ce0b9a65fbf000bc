"""Plugin data encrypted at rest with core's credential keys (`GUICHE_ENCRYPTION_KEYS`).

For secrets a plugin keeps in its own tables (a WhatsApp Web session's auth state):
the same Fernet keys and rotation as channel credentials, so an operator manages one
set of keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guiche.channel_host.runtime import cipher_of
from guiche.foundation.crypto import CredentialsUnreadable

if TYPE_CHECKING:
    from guiche.runtime.services import Services


def encrypt_json(services: Services, data: dict[str, Any]) -> str:
    """A JSON object as an encrypted token (text) for a plugin's own column."""
    return cipher_of(services).encrypt(data)


def decrypt_json(services: Services, token: str) -> dict[str, Any]:
    """The object `encrypt_json` sealed (`{}` for an empty token); raises
    `CredentialsUnreadable` when no configured key opens it."""
    return cipher_of(services).decrypt(token)


__all__ = ["CredentialsUnreadable", "decrypt_json", "encrypt_json"]
