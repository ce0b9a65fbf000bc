"""Every HTTP handler of the plugin; the logic they call lives in its own module.

`/webhooks/meta_cloud/app`: one Meta app serving many tenants' numbers (Tech Provider).

The app secret and verify token are the operator's (`GUICHE_META_APP_SECRET`,
`GUICHE_META_VERIFY_TOKEN`). Each change is routed by `metadata.phone_number_id`, the
channel type's provider identity, to the one channel holding it (core's
`channels_by_identity`: active, provisioned, one per number platform-wide) and ingested
for that channel's tenant. A number no routable channel holds is logged and
acknowledged: a non-2xx makes Meta retry for days.
Only a failure to store answers 5xx, so Meta redelivers and dedup keeps it exact.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web

from guiche.channels import ChannelError, WebhookAuthError
from guiche.plugin import (
    Forbidden,
    NotFound,
    WebhookAck,
    channels_by_identity,
    endpoint,
    ingest_batch,
    load_channel,
    message_media,
    plugin_context,
    provider_errors,
    read_webhook,
    services_of,
)
from guiche_meta_cloud.config import AppWebhookSettings
from guiche_meta_cloud.media import StoredMedia, stored_media
from guiche_meta_cloud.parse import load_body, parse_webhook_payload
from guiche_meta_cloud.signature import SIGNATURE_HEADER, check_signature, subscription_challenge
from guiche_meta_cloud.templates import (
    SYNC_PERMISSION,
    GraphUnavailable,
    SyncResult,
    sync_channel,
)

log = logging.getLogger("guiche.plugin.meta_cloud")

CHANNEL_TYPE = "meta_cloud"
APP_PATH = "app"  # not a UUID, so never confused with core's /webhooks/meta_cloud/{channel_id}


async def verify(request: web.Request) -> web.StreamResponse:
    """Meta's GET subscription check with the operator's verify token."""
    settings = AppWebhookSettings()
    token = settings.verify_token.get_secret_value() if settings.verify_token else ""
    try:
        challenge = subscription_challenge(dict(request.query), token)
    except WebhookAuthError as exc:
        raise Forbidden(exc.message, code="subscription_refused") from None
    return web.Response(text=challenge, content_type="text/plain")


async def receive(request: web.Request) -> dict[str, Any]:
    """Verify with the app secret, then route and ingest each phone number's changes."""
    settings = AppWebhookSettings()
    if settings.app_secret is None:
        raise NotFound(
            "the app-level Meta webhook is not configured (set GUICHE_META_APP_SECRET)",
            code="meta_app_webhook_disabled",
        )
    webhook = await read_webhook(request)  # Meta posts application/json
    with provider_errors(body=webhook.body):
        secret = settings.app_secret.get_secret_value()
        check_signature(webhook.body, request.headers.get(SIGNATURE_HEADER), secret)
        parsed = parse_webhook_payload(load_body(webhook.body))
    services = services_of(request)
    changes = parsed.by_phone()
    routes = await channels_by_identity(
        services, CHANNEL_TYPE, set(changes), ttl=settings.directory_ttl_seconds
    )
    ack = WebhookAck(ignored=parsed.ignored)
    unknown: list[str] = []
    for phone_number_id, change in changes.items():
        channel = routes.get(phone_number_id)
        if channel is None:
            unknown.append(phone_number_id)
            ack.ignored += len(change.messages) + len(change.statuses)
            log.warning(
                "Meta webhook for a number no routable channel holds: acknowledged, dropped",
                extra={
                    "phone_number_id": phone_number_id,
                    "items": len(change.messages) + len(change.statuses),
                },
            )
            continue
        ack.add(await ingest_batch(services, channel, channel.adapter.batch_for(change)))
    return ack.body(unknown_phone_number_ids=unknown)


@endpoint(
    SYNC_PERMISSION,
    response=SyncResult,
    summary="Sync a WhatsApp Cloud channel's message templates from Meta",
    tags=("meta_cloud",),
    errors=(502,),
)
async def sync_route(request: web.Request) -> SyncResult:
    ctx = await plugin_context(request)
    try:
        channel_id = uuid.UUID(request.match_info["id"])
    except ValueError:
        raise NotFound("channel not found") from None
    channel = await load_channel(ctx.services, channel_id, tenant_id=ctx.tenant_id)
    if channel is None or channel.info.type != CHANNEL_TYPE:
        raise NotFound("channel not found")
    try:
        return await sync_channel(ctx.services, channel)
    except ChannelError as exc:
        raise GraphUnavailable(
            f"Meta's Graph API refused the template sync: {exc.message}",
            details={"error_code": exc.code, **exc.details},
        ) from None


@endpoint(
    "conversations.read",
    response=StoredMedia,
    summary="Fetch (once) and describe an inbound message's attachment; download at download_url",
    tags=("meta_cloud",),
)
async def media_route(request: web.Request) -> StoredMedia:
    ctx = await plugin_context(request)
    try:
        message_id = uuid.UUID(request.match_info["message_id"])
    except ValueError:
        raise NotFound("message not found") from None
    row = await message_media(ctx.services, ctx.tenant_id, message_id, request=request)
    return stored_media(row)
