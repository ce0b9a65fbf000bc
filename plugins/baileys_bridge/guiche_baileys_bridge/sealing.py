"""The sidecar's shared secret as stored in the lease row: sealed with a key derived
from the channel's own `webhook_secret` (stable, derived by core from
`GUICHE_SECRET_KEY`, never stored), so the bridge that writes it and any worker's
adapter that sends through the sidecar read it without other key material."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from guiche.channels import ChannelInfo


def _fernet(channel: ChannelInfo) -> Fernet:
    seed = f"baileys-bridge:{channel.id}:{channel.webhook_secret}".encode()
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(seed).digest()))


def seal(channel: ChannelInfo, secret: str) -> str:
    return _fernet(channel).encrypt(secret.encode()).decode()


def unseal(channel: ChannelInfo, token: str) -> str | None:
    try:
        return _fernet(channel).decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        return None
