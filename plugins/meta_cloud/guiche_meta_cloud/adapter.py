"""The WhatsApp Cloud API channel adapter: webhooks in, Graph API sends out.

One instance per configured phone number. Core calls `parse_webhook` and
`verify_subscription` from `/webhooks/meta_cloud/<channel_id>`, `send` from the
outbound worker, `fetch_media` when an attachment is first opened.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from typing import ClassVar

from pydantic import BaseModel

from guiche.channels import (
    CAP_CUSTOMER_CARE_WINDOW,
    CAP_MEDIA,
    CAP_REACTIONS,
    CAP_READ_RECEIPTS,
    CAP_REPLY_CONTEXT,
    CAP_TEMPLATES,
    ChannelAdapter,
    FetchedMedia,
    Media,
    OutboundMedia,
    OutboundMessage,
    PermanentSendError,
    ReadReceipt,
    RetryableSendError,
    SendResult,
    WebhookBatch,
    WebhookRequest,
)
from guiche_meta_cloud.client import GraphClient
from guiche_meta_cloud.config import MetaCloudConfig
from guiche_meta_cloud.outbound import message_body
from guiche_meta_cloud.parse import ChangeBatch, load_body, parse_webhook_payload
from guiche_meta_cloud.pricing import estimate
from guiche_meta_cloud.signature import SIGNATURE_HEADER, check_signature, subscription_challenge
from guiche_meta_cloud.throughput import take_send_token

log = logging.getLogger("guiche.plugin.meta_cloud")

CAPABILITIES = frozenset(
    {
        CAP_CUSTOMER_CARE_WINDOW,
        CAP_TEMPLATES,
        CAP_MEDIA,
        CAP_REACTIONS,
        CAP_REPLY_CONTEXT,
        CAP_READ_RECEIPTS,
    }
)


class MetaCloudAdapter(ChannelAdapter):
    config_model: ClassVar[type[BaseModel]] = MetaCloudConfig
    capabilities: ClassVar[frozenset[str]] = CAPABILITIES
    config: MetaCloudConfig

    @classmethod
    def provider_identity(cls, config: BaseModel) -> str | None:
        """The phone number: one channel per number platform-wide. `setup()` reads it
        with the channel's token, which is the proof of control a second claim needs."""
        return str(getattr(config, "phone_number_id", "")) or None

    @property
    def graph(self) -> GraphClient:
        return GraphClient(self.http, self.config)

    # --- webhooks ------------------------------------------------------------------------

    async def verify_subscription(self, request: WebhookRequest) -> str:
        return subscription_challenge(request.query, self.config.secret("verify_token"))

    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        """Verify the signature with the channel's app secret, keep this number's changes."""
        check_signature(
            request.body, request.header(SIGNATURE_HEADER), self.config.secret("app_secret")
        )
        parsed = parse_webhook_payload(load_body(request.body))
        ours = ChangeBatch(self.config.phone_number_id)
        ignored = parsed.ignored
        for phone_number_id, change in parsed.by_phone().items():
            if phone_number_id == self.config.phone_number_id:
                ours = change
                continue
            ignored += len(change.messages) + len(change.statuses)
            log.warning(
                "webhook items for another phone number ignored on this channel's URL "
                "(use the app-level webhook when one app serves several numbers)",
                extra={"channel": str(self.channel.id), "phone_number_id": phone_number_id},
            )
        return self.batch_for(ours, ignored=ignored)

    def batch_for(self, change: ChangeBatch, *, ignored: int = 0) -> WebhookBatch:
        """A change's items as a batch, with cost estimates from this channel's price table."""
        statuses = [
            status.model_copy(
                update={
                    "pricing": estimate(
                        status.pricing, self.config.prices, self.config.price_currency
                    )
                }
            )
            if status.pricing is not None
            else status
            for status in change.statuses
        ]
        return WebhookBatch(messages=change.messages, statuses=statuses, ignored=ignored)

    # --- sending -------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        await take_send_token(
            self.limiter, self.config.phone_number_id, self.config.throughput_per_second
        )
        uploaded: str | None = None
        if message.kind == "media" and message.media is not None:
            media = message.media
            if media.data_base64 and not media.provider_media_id and not media.url:
                uploaded = await self.upload_media(media)
        answer = await self.graph.call(
            "POST",
            f"{self.config.phone_number_id}/messages",
            json=message_body(message, media_id=uploaded),
        )
        sent = answer.get("messages")
        if not isinstance(sent, list) or not sent or not sent[0].get("id"):
            raise RetryableSendError(
                "Graph accepted the send but returned no message id", code="bad_response"
            )
        contacts = answer.get("contacts") if isinstance(answer.get("contacts"), list) else []
        recipient = contacts[0].get("wa_id") if contacts and isinstance(contacts[0], dict) else None
        return SendResult(provider_message_id=str(sent[0]["id"]), recipient=recipient, raw=answer)

    async def upload_media(self, media: OutboundMedia) -> str:
        """Upload inline bytes to `/{phone_number_id}/media`; the media id to send."""
        try:
            data = base64.b64decode(media.data_base64 or "", validate=True)
        except (binascii.Error, ValueError):
            raise PermanentSendError(
                "media bytes are not valid base64", code="invalid_media"
            ) from None
        mime = media.mime_type or "application/octet-stream"
        filename = media.filename or f"{media.kind}"
        answer = await self.graph.call(
            "POST",
            f"{self.config.phone_number_id}/media",
            data={"messaging_product": "whatsapp", "type": mime},
            files={"file": (filename, data, mime)},
        )
        media_id = answer.get("id")
        if not media_id:
            raise RetryableSendError(
                "Graph returned no id for the uploaded media", code="bad_response"
            )
        return str(media_id)

    async def mark_read(self, receipt: ReadReceipt) -> None:
        """`status: read` on the customer's message: Meta marks it and every earlier one."""
        await self.graph.call(
            "POST",
            f"{self.config.phone_number_id}/messages",
            json={
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": receipt.provider_message_id,
            },
        )

    # --- media ---------------------------------------------------------------------------

    async def fetch_media(self, media: Media) -> FetchedMedia:
        """`GET /{media-id}` for a short-lived URL, then the URL itself with the token."""
        if not media.provider_media_id:
            raise PermanentSendError("this attachment has no Meta media id", code="no_media_id")
        info = await self.graph.call("GET", media.provider_media_id)
        url = info.get("url")
        if not url:
            raise PermanentSendError("Graph returned no download URL", code="no_media_url")
        data, content_type = await self.graph.download(str(url))
        expected = info.get("sha256")
        if expected and hashlib.sha256(data).hexdigest() != str(expected).lower():
            raise RetryableSendError(
                "downloaded media does not match Meta's sha256", code="media_corrupt"
            )
        mime = info.get("mime_type") or media.mime_type or content_type
        return FetchedMedia(data=data, mime_type=mime, filename=media.filename)

    # --- lifecycle -----------------------------------------------------------------------

    async def setup(self) -> None:
        """Check the token can see the number (a wrong id or token fails at creation)."""
        await self.graph.call(
            "GET", self.config.phone_number_id, params={"fields": "id,display_phone_number"}
        )
