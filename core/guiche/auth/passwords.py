"""argon2id password hashing; hashes made with older parameters are upgraded on login."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with argon2-cffi's current recommended parameters


def use_hasher(hasher: PasswordHasher) -> None:
    """Swap the parameters (tests use cheap ones; existing hashes upgrade on next login)."""
    global _hasher, _dummy_hash
    _hasher = hasher
    _dummy_hash = hasher.hash("guiche-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


_dummy_hash = _hasher.hash("guiche-timing-equaliser")


def dummy_hash() -> str:
    """A real hash to verify against when the email is unknown, so timing does not reveal it."""
    return _dummy_hash
