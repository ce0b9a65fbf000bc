"""Core's per-channel webhook route `/webhooks/<channel_type>/<channel_id>`, on the one
receiver (`guiche.http.webhook_receiver`).

Core owns the receiver (`read_webhook` → `provider_errors` around the parse → ingest →
`WebhookAck`) so every channel, ours or a third party's, and every plugin's own webhook
route (public as `guiche.plugin.receive_channel_webhook` and friends) gets the same
rules: unknown or disabled channels are 404, a body of another media type than the
adapter declares (`webhook_media_types`, JSON by default) 415, signature failures 401
with nothing stored, a payload that does not parse 400 (logged), and the 200 is sent only
after the batch has committed (a provider retry after a crash is safe: dedup).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from guiche.channel_host.runtime import LoadedChannel, load_channel_adapter
from guiche.channels import WebhookAuthError
from guiche.foundation.errors import Forbidden, NotFound
from guiche.http.endpoint import PUBLIC, endpoint
from guiche.http.webhook_receiver import receive_for_channel, webhook_request
from guiche.runtime.services import services_of
from guiche.tenancy.scope import parse_uuid

routes = web.RouteTableDef()
PATH = "/webhooks/{channel_type}/{channel_id}"


async def _load(request: web.Request) -> LoadedChannel:
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
async def receive(request: web.Request) -> dict[str, Any]:
    return await receive_for_channel(request, await _load(request))
