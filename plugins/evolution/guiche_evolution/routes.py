"""The plugin's HTTP surface: the QR code for operators, and the webhook variant that
carries the secret in the URL path for Evolution servers that drop webhook headers."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from guiche.channels import WebhookBatch
from guiche.plugin import (
    PUBLIC,
    ApiError,
    NotFound,
    endpoint,
    ingest_batch,
    load_channel,
    plugin_context,
    provider_call,
    receive_channel_webhook,
    services_of,
)
from guiche_evolution.adapter import CHANNEL_TYPE, EvolutionAdapter, ProvisioningError

PERMISSION_QRCODE = "evolution.qrcode"
QRCODE_PATH = "channels/{id}/qrcode"
#: Mounted by core as /webhooks/evolution/channel/{channel_id}/{secret}.
PATH_WEBHOOK = "channel/{channel_id}/{secret}"


class EvolutionUnavailable(ApiError):
    """The company's Evolution server failed or refused; the message says how."""

    status, code = 502, "evolution_error"


class QrCodeOut(BaseModel):
    channel_id: uuid.UUID
    state: str
    detail: str = ""
    qr_code: str | None = None  # base64 PNG (no data: prefix)
    qr_text: str | None = None  # the raw QR content, for clients that draw it themselves
    pairing_code: str | None = None


def _channel_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("channel not found", code="channel_not_found") from None


@endpoint(
    PERMISSION_QRCODE,
    response=QrCodeOut,
    summary="Link an Evolution channel's phone: its QR code or pairing code, or its state",
    tags=("evolution",),
    errors=(502,),
)
async def channel_qrcode(request: web.Request) -> QrCodeOut:
    ctx = await plugin_context(request)
    channel_id = _channel_id(request.match_info["id"])
    loaded = await load_channel(ctx.services, channel_id, tenant_id=ctx.tenant_id)
    if loaded is None or loaded.info.type != CHANNEL_TYPE:
        raise NotFound("channel not found", code="channel_not_found")
    adapter: EvolutionAdapter = loaded.adapter
    try:
        with provider_call(loaded.info, "qr_code"):
            update = await adapter.qr_code()
    except ProvisioningError as exc:
        raise EvolutionUnavailable(exc.message, code=exc.code or None) from None
    # The channel shows its state (and operators get a channel.state event) at once,
    # not only when Evolution's next connection.update arrives.
    await ingest_batch(ctx.services, loaded, WebhookBatch(connection=[update]))
    qr_text = update.raw.get("code") if isinstance(update.raw.get("code"), str) else None
    return QrCodeOut(
        channel_id=channel_id,
        state=update.state.value,
        detail=update.detail,
        qr_code=update.qr_code,
        qr_text=qr_text,
        pairing_code=update.pairing_code,
    )


@endpoint(PUBLIC, summary="Evolution webhook with the channel's secret in the path")
async def path_webhook(request: web.Request) -> dict[str, Any]:
    channel_id = _channel_id(request.match_info["channel_id"])
    loaded = await load_channel(services_of(request), channel_id)
    if loaded is None or loaded.info.type != CHANNEL_TYPE:
        raise NotFound("channel not found", code="channel_not_found")
    return await receive_channel_webhook(request, loaded)  # the adapter checks the secret
