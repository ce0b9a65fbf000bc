"""The one webhook receiver: the request with its raw body, the one mapping of a parser's
refusal to an answer, the acknowledgement, and `receive_for_channel`, which assembles
them for one channel (verify and parse → ingest → answer after the commit).

Core's route (`guiche.api.webhooks`) and plugins' own webhook routes (through
`guiche.plugin`: `receive_channel_webhook`, or the parts for an app-level webhook that
fans out to many channels) share it, so a channel plugin writes only verify and parse.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from guiche.channel_host.runtime import LoadedChannel
from guiche.channels import ChannelError, IngestOutcome, WebhookAuthError, WebhookRequest
from guiche.foundation.errors import BadRequest, Unauthorized
from guiche.http.endpoint import require_media_type
from guiche.inbound.ingest import ingest
from guiche.provider_http.call_log import provider_call
from guiche.runtime.services import services_of

log = logging.getLogger("guiche.webhooks")


@dataclass
class WebhookAck:
    """What a webhook's 200 reports, summed over the channels the body fed."""

    messages: int = 0
    duplicates: int = 0
    statuses: int = 0
    ignored: int = 0
    failed: int = 0

    def add(self, result: IngestOutcome) -> None:
        """Count one channel's stored batch (call after `ingest` committed it)."""
        self.messages += len(result.stored)
        self.duplicates += result.duplicates
        self.statuses += result.statuses_applied
        self.ignored += result.statuses_ignored
        self.failed += len(result.failed)

    def body(self, **extra: Any) -> dict[str, Any]:
        return {"status": "ok", **dataclasses.asdict(self), **extra}


async def read_webhook(
    request: web.Request, media_types: Collection[str] | None = ("application/json",)
) -> WebhookRequest:
    """The provider's request with its raw body (what signatures are computed over);
    415 first unless the body is declared as one of `media_types` (None: any)."""
    if media_types is not None:
        require_media_type(request, media_types)
    return webhook_request(request, await request.read())


@contextlib.contextmanager
def provider_errors(channel_id: uuid.UUID | None = None, body: bytes = b"") -> Iterator[None]:
    """Answer a parser's refusal the one way: `WebhookAuthError` → 401 `invalid_signature`
    (nothing stored); a payload that does not parse → 400 `unparseable_webhook`, logged
    with the start of the body so the shape can be fixed."""
    try:
        yield
    except WebhookAuthError as exc:
        raise Unauthorized(
            exc.message or "invalid webhook signature", code="invalid_signature"
        ) from None
    except (ValidationError, ValueError, ChannelError) as exc:
        log.error(
            "webhook could not be parsed",
            extra={
                "channel": str(channel_id) if channel_id else None,
                "error": str(exc),
                "body": body[:2000].decode(errors="replace"),
            },
        )
        raise BadRequest(
            "webhook payload could not be parsed",
            code="unparseable_webhook",
            details=str(exc)[:500],
        ) from None


def webhook_request(request: web.Request, body: bytes) -> WebhookRequest:
    return WebhookRequest(
        method=request.method,
        path=request.path,
        headers=dict(request.headers),
        query=dict(request.query),
        body=body,
        public_url=str(request.url),
    )


async def receive_for_channel(request: web.Request, loaded: LoadedChannel) -> dict[str, Any]:
    """The whole receiver for a body addressed to one channel: media type, the adapter's
    verify-and-parse, ingest, and the answer — sent only after the batch committed, so a
    provider retrying after a crash finds it deduplicated. Core's route and plugins' own
    webhook routes (another path, the secret in the URL) share it."""
    webhook = await read_webhook(request, loaded.adapter.webhook_media_types)
    with (
        provider_errors(loaded.row.id, webhook.body),
        provider_call(loaded.row.tenant_id, loaded.row.id, "parse_webhook"),
    ):
        batch = await loaded.adapter.parse_webhook(webhook)
    ack = WebhookAck(ignored=batch.ignored)
    ack.add((await ingest(services_of(request), loaded.row, batch)).outcome())
    return ack.body()
