"""Core's per-channel webhook route: `/webhooks/<channel_type>/<channel_id>`.

Core owns it so every channel, ours or a third party's, gets the same rules: unknown or
disabled channels are 404, a body of another media type than the adapter declares
(`webhook_media_types`, JSON by default) 415, signature failures 401 with nothing
stored, and the 200 is
sent only after the batch has committed (a provider retry after a crash is safe: dedup).
"""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from guiche.channel_runtime import load_channel_adapter
from guiche.channels import ChannelError, WebhookAuthError, WebhookRequest
from guiche.inbound.ingest import ingest
from guiche.services import services_of
from guiche.tenancy import parse_uuid
from guiche.web.endpoint import PUBLIC, endpoint, require_media_type
from guiche.web.errors import BadRequest, Forbidden, NotFound, Unauthorized

log = logging.getLogger("guiche.webhooks")

routes = web.RouteTableDef()
PATH = "/webhooks/{channel_type}/{channel_id}"


def webhook_request(request: web.Request, body: bytes) -> WebhookRequest:
    return WebhookRequest(
        method=request.method,
        path=request.path,
        headers=dict(request.headers),
        query=dict(request.query),
        body=body,
        public_url=str(request.url),
    )


async def _load(request: web.Request):  # type: ignore[no-untyped-def]
    channel_id = parse_uuid(request.match_info["channel_id"], "channel")
    loaded = await load_channel_adapter(
        services_of(request), channel_id, channel_type=request.match_info["channel_type"]
    )
    if loaded is None:
        raise NotFound("channel not found", code="channel_not_found")
    return loaded


@routes.get(PATH)
@endpoint(PUBLIC, summary="Provider subscription check (e.g. Meta's hub.challenge)")
async def verify_subscription(request: web.Request) -> web.StreamResponse:
    loaded = await _load(request)
    try:
        challenge = await loaded.adapter.verify_subscription(webhook_request(request, b""))
    except WebhookAuthError as exc:
        raise Forbidden(
            exc.message or "subscription refused", code="subscription_refused"
        ) from None
    return web.Response(text=challenge, content_type="text/plain")


@routes.post(PATH)
@endpoint(PUBLIC, summary="Provider webhook: verified, normalised, stored, then acknowledged")
async def receive(request: web.Request) -> dict[str, object]:
    loaded = await _load(request)
    accepted = loaded.adapter.webhook_media_types
    if accepted is not None:
        require_media_type(request, accepted)
    body = await request.read()
    try:
        batch = await loaded.adapter.parse_webhook(webhook_request(request, body))
    except WebhookAuthError as exc:
        raise Unauthorized(
            exc.message or "invalid webhook signature", code="invalid_signature"
        ) from None
    except (ValidationError, ValueError, ChannelError) as exc:
        log.error(
            "webhook could not be parsed",
            extra={
                "channel": str(loaded.row.id),
                "error": str(exc),
                "body": body[:2000].decode(errors="replace"),
            },
        )
        raise BadRequest(
            "webhook payload could not be parsed",
            code="unparseable_webhook",
            details=str(exc)[:500],
        ) from None
    result = await ingest(services_of(request), loaded.row, batch)
    return {
        "status": "ok",
        "messages": len(result.created),
        "duplicates": result.duplicates,
        "statuses": result.statuses_applied,
        "ignored": batch.ignored + result.statuses_ignored,
        "failed": len(result.failed),
    }
