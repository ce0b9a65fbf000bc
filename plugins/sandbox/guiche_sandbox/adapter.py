"""The sandbox channel: a WhatsApp-like number with no provider behind it.

Customers' messages and delivery ticks are whatever is POSTed to core's webhook route
for the channel (`/webhooks/sandbox/{channel_id}`, authenticated by the secret core
derives for it); replies are accepted and kept nowhere but in Guichê, as "sent". So a
fresh install, a frontend developer or a demo can exercise the whole loop — inbox,
assignment, reply, ticks, transfer, close — without a provider account.
"""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from collections import deque
from typing import Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from guiche import channels as ch
from guiche.plugin import normalize_phone

CHANNEL_TYPE = "sandbox"
SECRET_HEADER = "X-Guiche-Webhook-Secret"
Scenario = Literal["rate_limited", "server_error", "unauthorized", "forbidden"]


class SandboxConfig(BaseModel):
    """Nothing to connect to: only how to read the numbers customers write from."""

    default_region: str = Field(
        default="BR",
        min_length=2,
        max_length=2,
        description="Region (ISO 3166) for numbers posted without a country code",
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PostedMessage(_Strict):
    """One customer message as posted to the sandbox's webhook."""

    from_: str = Field(alias="from", min_length=1, description="The customer's phone")
    text: str = Field(min_length=1, max_length=4096)
    name: str | None = Field(default=None, max_length=200)
    #: Give one to make a retried post idempotent; without it every post is a new message.
    id: str | None = Field(default=None, min_length=1, max_length=200)
    timestamp: dt.datetime | None = None


class PostedStatus(_Strict):
    """A delivery tick for a reply: its provider id (as Guichê shows it) and the status."""

    id: str = Field(min_length=1, max_length=200)
    status: Literal["sent", "delivered", "read", "failed"]
    timestamp: dt.datetime | None = None


class SandboxWebhook(_Strict):
    """The body: one message at the top level, or lists of messages and statuses."""

    messages: list[PostedMessage] = Field(default_factory=list, max_length=500)
    statuses: list[PostedStatus] = Field(default_factory=list, max_length=500)

    @model_validator(mode="before")
    @classmethod
    def _single_message(cls, data: object) -> object:
        if isinstance(data, dict) and "from" in data:
            return {"messages": [data]}
        return data


class SandboxAdapter(ch.ChannelAdapter):
    config_model: ClassVar[type[BaseModel]] = SandboxConfig
    capabilities: ClassVar[frozenset[str]] = frozenset({ch.CAP_IDEMPOTENT_SEND})
    config: SandboxConfig

    def __init__(
        self, channel: ch.ChannelInfo, config: BaseModel, *, http: Any = None, limiter: Any = None
    ) -> None:
        super().__init__(channel, config, http=http, limiter=limiter)
        self._failures: deque[Scenario] = deque()

    def fail_next_send(self, scenario: Scenario) -> None:
        """Make the next send fail the way a provider's would (tests, demos of retries)."""
        self._failures.append(scenario)

    async def parse_webhook(self, request: ch.WebhookRequest) -> ch.WebhookBatch:
        given, secret = request.header(SECRET_HEADER), self.channel.webhook_secret
        if not given or not secret or not hmac.compare_digest(given, secret):
            raise ch.WebhookAuthError(f"wrong or missing {SECRET_HEADER} header")
        posted = SandboxWebhook.model_validate(orjson.loads(request.body))
        now = dt.datetime.now(dt.UTC)
        return ch.WebhookBatch(
            messages=[self._inbound(message, now) for message in posted.messages],
            statuses=[
                ch.StatusUpdate(
                    provider_message_id=status.id,
                    status=ch.DeliveryStatus(status.status),
                    timestamp=_utc(status.timestamp) or now,
                    raw=status.model_dump(mode="json"),
                )
                for status in posted.statuses
            ],
        )

    def _inbound(self, message: PostedMessage, now: dt.datetime) -> ch.InboundMessage:
        phone = normalize_phone(message.from_, self.config.default_region)
        return ch.InboundMessage(
            # Posters choose ids freely: scoped by sender, two customers' "1" are two messages.
            provider_message_id=f"{phone}:{message.id or uuid.uuid4()}",
            sender=ch.Sender(phone=phone, name=message.name),
            timestamp=_utc(message.timestamp) or now,
            type=ch.MessageType.TEXT,
            text=message.text,
            raw=message.model_dump(mode="json", by_alias=True),
        )

    async def send(self, message: ch.OutboundMessage) -> ch.SendResult:
        if self._failures:
            _raise(self._failures.popleft())
        if message.to.phone is None and message.to.provider_user_id is None:
            raise ch.PermanentSendError("no recipient", code="no_recipient")
        # Our message id is the provider id: a retried send is the same message.
        return ch.SendResult(provider_message_id=f"out-{message.message_id}")


def _raise(scenario: Scenario) -> None:
    if scenario == "rate_limited":
        raise ch.RetryableSendError("sandbox: rate limited", retry_after=1.0, code="429")
    if scenario == "server_error":
        raise ch.RetryableSendError("sandbox: server error", code="500")
    unhealthy = scenario == "unauthorized"
    raise ch.PermanentSendError(f"sandbox: {scenario}", code=scenario, channel_unhealthy=unhealthy)


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
