"""The `baileys` channel adapter: sends go straight to the sidecar that runs the
session (found through its lease), everything inbound arrives through the bridge
service (`bridge.py`), never through a webhook."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hmac
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel

from guiche.channels import (
    CAP_MEDIA,
    CAP_QR_SESSION,
    CAP_REACTIONS,
    CAP_REPLY_CONTEXT,
    ChannelAdapter,
    ConnectionState,
    ConnectionUpdate,
    FetchedMedia,
    Media,
    OutboundMessage,
    PermanentSendError,
    RetryableSendError,
    SendResult,
    WebhookAuthError,
    WebhookBatch,
    WebhookRequest,
)
from guiche_baileys_bridge import store
from guiche_baileys_bridge.config import BaileysConfig
from guiche_baileys_bridge.outbound import send_frame, send_result
from guiche_baileys_bridge.parse import frames_batch
from guiche_baileys_bridge.sealing import unseal
from guiche_baileys_bridge.wire import BridgeConnection, BridgeError

SECRET_HEADER = "X-Guiche-Bridge-Secret"
#: The sidecar paces sends per number, so a send may wait behind others.
SEND_TIMEOUT_SECONDS = 120.0


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class BaileysAdapter(ChannelAdapter):
    config_model: ClassVar[type[BaseModel]] = BaileysConfig
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {CAP_QR_SESSION, CAP_MEDIA, CAP_REPLY_CONTEXT, CAP_REACTIONS}
    )

    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        """Bridge frames pushed over HTTP to core's `/webhooks/baileys/<channel id>`
        (one frame, or `{"frames": [...]}`), authenticated by the channel's webhook
        secret in `X-Guiche-Bridge-Secret`. The bridge service itself does not need it
        (it holds a TCP connection); it serves pushers that cannot."""
        given = request.header(SECRET_HEADER) or ""
        expected = self.channel.webhook_secret
        if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookAuthError("missing or wrong bridge secret")
        body = orjson.loads(request.body)
        if not isinstance(body, dict):
            raise ValueError("a bridge frame or {frames: [...]} is a JSON object")
        frames = body.get("frames") if isinstance(body.get("frames"), list) else [body]
        accept_groups = isinstance(self.config, BaileysConfig) and self.config.accept_groups
        return frames_batch(frames, accept_groups=accept_groups)

    async def sidecar(self) -> tuple[str, int, str]:
        """(host, port, secret) of the sidecar running this channel's session, from the
        lease row; a retryable error while no bridge holds a live lease."""
        row = await store.load(self.channel.id)
        now = dt.datetime.now(dt.UTC)
        if not row or not row["address"] or not row["lease_until"] or row["lease_until"] < now:
            raise RetryableSendError(
                "the WhatsApp session is not running", code="not_connected", retry_after=15
            )
        secret = unseal(self.channel, row["secret_encrypted"])
        if secret is None:
            raise RetryableSendError("the bridge's secret is unreadable", code="not_connected")
        host, port = split_address(row["address"])
        return host, port, secret

    async def send(self, message: OutboundMessage) -> SendResult:
        frame = send_frame(message)
        host, port, secret = await self.sidecar()
        try:
            conn = await BridgeConnection.open(host, port, secret)
        except BridgeError as exc:
            raise RetryableSendError(str(exc), code="not_connected", retry_after=15) from None
        try:
            pump = asyncio.ensure_future(conn.pump(_ignore))
            try:
                answer = await conn.request(str(self.channel.id), frame, SEND_TIMEOUT_SECONDS)
            except TimeoutError:
                raise RetryableSendError("the sidecar did not answer", code="timeout") from None
            except BridgeError as exc:
                raise RetryableSendError(str(exc), code="not_connected") from None
            finally:
                pump.cancel()
        finally:
            await conn.close()
        return send_result(answer)

    async def connect(self) -> ConnectionUpdate | None:
        return await self.qr_code()

    async def qr_code(self) -> ConnectionUpdate | None:
        """The session's state as the bridge last recorded it, with the QR if any."""
        row = await store.load(self.channel.id)
        if row is None:
            return ConnectionUpdate(state=ConnectionState.CONNECTING, detail="starting")
        state = row["state"] if row["state"] in set(ConnectionState) else "connecting"
        return ConnectionUpdate(
            state=ConnectionState(state),
            detail=row["detail"] or "",
            qr_code=row["qr"] or None,
            pairing_code=row["pairing_code"] or None,
            me=row["me"] or None,
        )

    async def disconnect(self) -> None:
        """Deactivated or deleted: the bridge running the session logs it out."""
        await store.set_command(self.channel.id, self.channel.tenant_id, "logout")

    async def fetch_media(self, media: Media) -> FetchedMedia:
        """The bytes the sidecar downloaded and decrypted when the message arrived."""
        if not media.data_base64:
            raise PermanentSendError("this attachment was not downloaded", code="media_gone")
        try:
            data = base64.b64decode(media.data_base64, validate=True)
        except (binascii.Error, ValueError):
            raise PermanentSendError(
                "the attachment's bytes are corrupt", code="media_gone"
            ) from None
        return FetchedMedia(data=data, mime_type=media.mime_type, filename=media.filename)


async def _ignore(frame: dict[str, Any]) -> None:
    return None
