"""Testing helpers for Guichê and its plugins (public API).

- `FakeChannelPlugin`: an in-process channel plugin whose "provider" records what was
  sent, can be told to fail, and can run a hook while a send is in flight
  (`FakeProvider.on_send`), for tests of core and of feature plugins.
- `ChannelContract`: a pytest base class any channel plugin (ours or a third party's)
  subclasses to check its adapter against the contract: webhooks parse into normalised
  types, bad signatures raise `WebhookAuthError`, sends return a result or a typed error.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel

from guiche.channels import (
    CAP_CUSTOMER_CARE_WINDOW,
    CAP_IDEMPOTENT_SEND,
    CAP_MEDIA,
    CAP_READ_RECEIPTS,
    CAP_SEND_LOOKUP,
    CAP_TEMPLATES,
    ChannelAdapter,
    ChannelInfo,
    FetchedMedia,
    InboundMessage,
    Media,
    OutboundMessage,
    PermanentSendError,
    ReadReceipt,
    SendResult,
    StatusUpdate,
    WebhookAuthError,
    WebhookBatch,
    WebhookRequest,
)
from guiche.specs import ChannelSpec, PluginInfo, hookimpl

FAKE_SIGNATURE_HEADER = "X-Fake-Signature"


class FakeCredentials(BaseModel):
    """A fake channel's settings: the webhook secret and whether the 24 h window applies."""

    webhook_secret: str = "fake-secret"
    api_token: str = "fake-token"


def sign_fake(body: bytes, secret: str = "fake-secret") -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def fake_webhook_body(
    messages: Sequence[InboundMessage] = (), statuses: Sequence[StatusUpdate] = ()
) -> bytes:
    """The fake provider's wire format: normalised types as JSON."""
    return orjson.dumps(
        {
            "messages": [m.model_dump(mode="json") for m in messages],
            "statuses": [s.model_dump(mode="json") for s in statuses],
        }
    )


OnSend = Callable[[OutboundMessage, str], Awaitable[None]]


@dataclass
class FakeProvider:
    """The outside world as the fake adapter sees it: records sends, scripts failures.

    `on_send(message, provider_message_id)`, when set, is awaited inside `send` after
    the message is accepted and before the call returns, like a real provider that
    posts webhooks (statuses, an echo of the send) while still answering the call:
    a test can post those webhooks to the app from it to exercise the races.

    `accepted` maps our message ids to the provider's answer: what `lookup_sent` reads
    and an idempotent provider replays.
    """

    sent: list[OutboundMessage] = field(default_factory=list)
    read: list[ReadReceipt] = field(default_factory=list)
    #: Attachments the provider holds, by `Media.provider_media_id`: (bytes, mime type).
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    fetches: int = 0
    accepted: dict[uuid.UUID, SendResult] = field(default_factory=dict)
    lookups: int = 0
    failures: list[Exception] = field(default_factory=list)
    delay: float = 0.0
    sent_event: asyncio.Event = field(default_factory=asyncio.Event)
    on_send: OnSend | None = None

    def fail_next(self, *errors: Exception) -> None:
        self.failures.extend(errors)

    async def wait_sent(self, count: int = 1, within: float = 10.0) -> list[OutboundMessage]:
        async with asyncio.timeout(within):
            while len(self.sent) < count:
                self.sent_event.clear()
                await self.sent_event.wait()
        return self.sent


class FakeChannelPlugin:
    """Register with `create_app(extra_plugins=(("fakechannel", FakeChannelPlugin()),))`."""

    name = "fakechannel"
    channel_type = "fake"

    def __init__(
        self, *, window_24h: bool = False, send_lookup: bool = False, idempotent: bool = False
    ) -> None:
        """`send_lookup` / `idempotent`: the provider can be asked about, or deduplicates,
        sends by our message id (`CAP_SEND_LOOKUP`, `CAP_IDEMPOTENT_SEND`)."""
        self.provider = FakeProvider()
        provider = self.provider
        caps = {CAP_MEDIA, CAP_TEMPLATES, CAP_READ_RECEIPTS}
        caps |= {CAP_CUSTOMER_CARE_WINDOW} if window_24h else set()
        caps |= {CAP_SEND_LOOKUP} if send_lookup else set()
        caps |= {CAP_IDEMPOTENT_SEND} if idempotent else set()

        class Adapter(FakeAdapter):
            capabilities: ClassVar[frozenset[str]] = frozenset(caps)

            def __init__(self, channel: ChannelInfo, config: BaseModel, *, http: Any = None):
                super().__init__(channel, config, http=http)
                self.provider = provider

        self.adapter_class = Adapter

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, version="1.0", description="Fake channel for tests")

    @hookimpl
    def guiche_channel_types(self) -> list[ChannelSpec]:
        return [
            ChannelSpec(
                type=self.channel_type,
                adapter=self.adapter_class,
                credentials_model=FakeCredentials,
                capabilities=self.adapter_class.capabilities,
            )
        ]


class FakeAdapter(ChannelAdapter):
    """Webhooks are JSON of normalised types, signed with HMAC-SHA256 of the raw body."""

    config_model: ClassVar[type[BaseModel]] = FakeCredentials
    provider: FakeProvider

    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        secret = getattr(self.config, "webhook_secret", "")
        given = request.header(FAKE_SIGNATURE_HEADER) or ""
        if not hmac.compare_digest(given, sign_fake(request.body, secret)):
            raise WebhookAuthError("bad fake signature")
        data = orjson.loads(request.body)
        return WebhookBatch(
            messages=[InboundMessage.model_validate(m) for m in data.get("messages", [])],
            statuses=[StatusUpdate.model_validate(s) for s in data.get("statuses", [])],
        )

    async def verify_subscription(self, request: WebhookRequest) -> str:
        if request.query.get("token") != getattr(self.config, "webhook_secret", None):
            raise WebhookAuthError("wrong verify token")
        return request.query.get("challenge", "")

    async def fetch_media(self, media: Media) -> FetchedMedia:
        self.provider.fetches += 1
        held = self.provider.media.get(media.provider_media_id or "")
        if held is None:
            raise PermanentSendError("the provider no longer has this file", code="media_gone")
        return FetchedMedia(data=held[0], mime_type=held[1], filename=media.filename)

    async def mark_read(self, receipt: ReadReceipt) -> None:
        if self.provider.failures:
            raise self.provider.failures.pop(0)
        self.provider.read.append(receipt)

    async def send(self, message: OutboundMessage) -> SendResult:
        if self.provider.delay:
            await asyncio.sleep(self.provider.delay)
        if self.provider.failures:
            raise self.provider.failures.pop(0)
        earlier = self.provider.accepted.get(message.message_id)
        if earlier is not None and CAP_IDEMPOTENT_SEND in self.capabilities:
            return earlier  # the provider's dedup: no second message
        provider_message_id = f"fake.{uuid.uuid4().hex}"
        result = SendResult(provider_message_id=provider_message_id)
        self.provider.sent.append(message)
        self.provider.accepted[message.message_id] = result
        if self.provider.on_send is not None:
            await self.provider.on_send(message, provider_message_id)
        self.provider.sent_event.set()
        return result

    async def lookup_sent(self, message: OutboundMessage) -> SendResult | None:
        if CAP_SEND_LOOKUP not in self.capabilities:
            return await super().lookup_sent(message)
        self.provider.lookups += 1
        return self.provider.accepted.get(message.message_id)


from guiche.contract import ChannelContract  # noqa: E402  (public here since the start)

__all__ = [
    "FAKE_SIGNATURE_HEADER",
    "ChannelContract",
    "FakeAdapter",
    "FakeChannelPlugin",
    "FakeCredentials",
    "FakeProvider",
    "OnSend",
    "fake_webhook_body",
    "sign_fake",
]
