"""`/webhooks/meta_cloud/app`: one Meta app serving many tenants' numbers (Tech Provider).

The app secret and verify token are the operator's (`GUICHE_META_APP_SECRET`,
`GUICHE_META_VERIFY_TOKEN`). Each change is routed by `metadata.phone_number_id` to the
active channel configured with that id and ingested for that channel's tenant. A number
no channel owns is logged and acknowledged: a non-2xx makes Meta retry for days.
Only a failure to store answers 5xx, so Meta redelivers and dedup keeps it exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from guiche.channels import WebhookAuthError
from guiche.plugin import (
    ApiError,
    BadRequest,
    Forbidden,
    NotFound,
    active_channels,
    ingest_batch,
    services_of,
)
from guiche_meta_cloud.config import AppWebhookSettings
from guiche_meta_cloud.parse import load_body, parse_webhook_payload
from guiche_meta_cloud.signature import SIGNATURE_HEADER, check_signature, subscription_challenge

log = logging.getLogger("guiche.plugin.meta_cloud")

CHANNEL_TYPE = "meta_cloud"
APP_PATH = "app"  # not a UUID, so never confused with core's /webhooks/meta_cloud/{channel_id}
DIRECTORY_KEY = "meta_cloud.phone_directory"


class InvalidSignature(ApiError):
    status, code = 401, "invalid_signature"


class PhoneDirectory:
    """phone_number_id → loaded channel, kept per process in `services.extras`.

    Trusted for `ttl` seconds (the operator setting, read per request); an id it does
    not know triggers a reload at once, so a channel created a moment ago is found on
    its first webhook. Two active channels claiming one number are both left out
    (never route a message to the wrong tenant).
    """

    def __init__(self) -> None:
        self._channels: dict[str, Any] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def lookup(
        self, services: Any, phone_number_ids: set[str], *, ttl: float
    ) -> dict[str, Any]:
        fresh = time.monotonic() - self._loaded_at < ttl
        if not fresh or not phone_number_ids <= self._channels.keys():
            await self._reload(services, since=self._loaded_at)
        return {pid: self._channels[pid] for pid in phone_number_ids if pid in self._channels}

    async def _reload(self, services: Any, *, since: float) -> None:
        async with self._lock:
            if self._loaded_at > since:  # another request reloaded while this one waited
                return
            found: dict[str, Any] = {}
            claimed_twice: set[str] = set()
            for channel in await active_channels(services, CHANNEL_TYPE):
                pid = channel.adapter.config.phone_number_id
                if pid in found:
                    claimed_twice.add(pid)
                found[pid] = channel
            for pid in claimed_twice:
                log.error(
                    "phone_number_id configured on several active channels: not routed",
                    extra={"phone_number_id": pid},
                )
                found.pop(pid)
            self._channels = found
            self._loaded_at = time.monotonic()


def directory(services: Any) -> PhoneDirectory:
    found = services.extras.get(DIRECTORY_KEY)
    if found is None:
        found = services.extras[DIRECTORY_KEY] = PhoneDirectory()
    return found


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
    body = await request.read()
    try:
        check_signature(
            body, request.headers.get(SIGNATURE_HEADER), settings.app_secret.get_secret_value()
        )
    except WebhookAuthError as exc:
        raise InvalidSignature(exc.message) from None
    try:
        parsed = parse_webhook_payload(load_body(body))
    except ValueError as exc:
        raise BadRequest(
            "webhook payload could not be parsed",
            code="unparseable_webhook",
            details=str(exc)[:300],
        ) from None
    services = services_of(request)
    changes = parsed.by_phone()
    routes = await directory(services).lookup(
        services, set(changes), ttl=settings.directory_ttl_seconds
    )
    totals = {
        "messages": 0,
        "duplicates": 0,
        "statuses": 0,
        "ignored": parsed.ignored,
        "failed": 0,
    }
    unknown: list[str] = []
    for phone_number_id, change in changes.items():
        channel = routes.get(phone_number_id)
        if channel is None:
            unknown.append(phone_number_id)
            totals["ignored"] += len(change.messages) + len(change.statuses)
            log.warning(
                "Meta webhook for a phone_number_id no active channel owns: acknowledged, dropped",
                extra={
                    "phone_number_id": phone_number_id,
                    "items": len(change.messages) + len(change.statuses),
                },
            )
            continue
        result = await ingest_batch(services, channel, channel.adapter.batch_for(change))
        totals["messages"] += len(result.created)
        totals["duplicates"] += result.duplicates
        totals["statuses"] += result.statuses_applied
        totals["ignored"] += result.statuses_ignored
        totals["failed"] += len(result.failed)
    return {"status": "ok", **totals, "unknown_phone_number_ids": unknown}
