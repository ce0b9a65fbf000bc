"""The parts of receiving a provider's webhook every receiver shares: the request with its
raw body, the one mapping of a parser's refusal to an answer, and the acknowledgement.

Kept free of the ingest machinery so the public plugin API (`guiche.plugin`) can offer
them to plugins' own webhook routes (an app-level webhook that fans out to many
channels); `guiche.inbound.webhooks.receive_for_channel` assembles them for one channel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import ValidationError

from guiche.channels import ChannelError, WebhookAuthError, WebhookRequest
from guiche.web.endpoint import require_media_type
from guiche.web.errors import BadRequest, Unauthorized

if TYPE_CHECKING:
    from guiche.inbound.ingest import IngestResult

log = logging.getLogger("guiche.webhooks")


@dataclass
class WebhookAck:
    """What a webhook's 200 reports, summed over the channels the body fed."""

    messages: int = 0
    duplicates: int = 0
    statuses: int = 0
    ignored: int = 0
    failed: int = 0

    def add(self, result: IngestResult) -> None:
        """Count one channel's stored batch (call after `ingest` committed it)."""
        self.messages += len(result.created)
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
