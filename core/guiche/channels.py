"""The channel contract: normalised types and the `ChannelAdapter` base (public API).

These pydantic models are the only thing that crosses between a channel plugin and
core. A plugin turns provider webhooks into a `WebhookBatch` and sends an
`OutboundMessage`; core owns storage, dedup, routing, retries and real-time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

# --- capabilities a channel type declares ---------------------------------------------

#: The provider only allows free-form messages within 24 h of the customer's last message.
CAP_CUSTOMER_CARE_WINDOW = "customer_care_window_24h"
CAP_TEMPLATES = "templates"
CAP_MEDIA = "media"
CAP_QR_SESSION = "qr_session"
CAP_REACTIONS = "reactions"
CAP_REPLY_CONTEXT = "reply_context"
#: The adapter implements `mark_read`: the customer sees our read receipt (blue ticks).
CAP_READ_RECEIPTS = "read_receipts"
#: The provider deduplicates sends on `OutboundMessage.message_id` (an idempotency key):
#: sending again after a crash returns the first send instead of a second message.
CAP_IDEMPOTENT_SEND = "idempotent_send"
#: The adapter implements `lookup_sent`: the provider can say whether it accepted a send
#: made under `OutboundMessage.message_id`, so a crashed send is reconciled, not redone.
CAP_SEND_LOOKUP = "send_lookup"

CUSTOMER_CARE_WINDOW = dt.timedelta(hours=24)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- inbound ---------------------------------------------------------------------------


class MessageType(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    INTERACTIVE = "interactive"  # a reply to buttons/lists we sent (incl. template quick replies)
    REACTION = "reaction"
    UNSUPPORTED = "unsupported"  # anything else: kept with its raw payload, never dropped


#: The field a message of these types must carry (media types: see MEDIA_TYPES).
_REQUIRED_PART: dict[MessageType, str] = {
    MessageType.LOCATION: "location",
    MessageType.REACTION: "reaction",
    MessageType.INTERACTIVE: "interactive",
}

MEDIA_TYPES = frozenset(
    {
        MessageType.IMAGE,
        MessageType.AUDIO,
        MessageType.VIDEO,
        MessageType.DOCUMENT,
        MessageType.STICKER,
    }
)


class Sender(_Model):
    """Who wrote. A phone (E.164) where the provider shows one, else a provider user id."""

    phone: str | None = None
    provider_user_id: str | None = None
    name: str | None = None
    username: str | None = None

    @model_validator(mode="after")
    def _has_identity(self) -> Sender:
        if not self.phone and not self.provider_user_id:
            raise ValueError("a sender needs a phone or a provider_user_id")
        return self


class ChatKind(StrEnum):
    """What a conversation is with: one person, a group of people, or a broadcast
    channel (e.g. a Telegram channel's posts)."""

    DIRECT = "direct"
    GROUP = "group"
    CHANNEL = "channel"


class Chat(_Model):
    """The chat a message was written in, when it is not the sender's own direct chat.

    Core keeps one conversation per chat: for a `group` or `channel` chat its contact is
    the chat itself (identified by `id` as a provider user id, named by `title`), and
    each message keeps its author (`InboundMessage.sender`). `id` must never equal a
    person's provider user id on the same channel type (WhatsApp's `…@g.us`, Telegram's
    negative chat ids already differ). Replies go to the chat (`Recipient.chat_kind`).
    """

    id: str = Field(min_length=1)
    kind: ChatKind = ChatKind.GROUP
    title: str | None = None


class Media(_Model):
    """A media attachment as the provider describes it; bytes are fetched or stored by core."""

    provider_media_id: str | None = None
    url: str | None = None
    mime_type: str | None = None
    filename: str | None = None
    caption: str | None = None
    sha256: str | None = None
    size: int | None = None
    voice: bool = False
    animated: bool = False
    data_base64: str | None = None  # inline bytes (e.g. Evolution with base64 enabled)


class Location(_Model):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class SharedContact(_Model):
    name: str
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    organization: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class InteractiveReply(_Model):
    """A tapped reply button, a chosen list row, or a template quick-reply button."""

    kind: Literal["button_reply", "list_reply", "quick_reply"]
    id: str | None = None
    title: str
    description: str | None = None


class Reaction(_Model):
    """An emoji on one of the conversation's messages; an empty emoji removes it."""

    target_provider_message_id: str
    emoji: str = ""


class InboundMessage(_Model):
    provider_message_id: str
    sender: Sender
    timestamp: dt.datetime
    type: MessageType
    text: str | None = None
    media: Media | None = None
    location: Location | None = None
    contacts: list[SharedContact] = Field(default_factory=list)
    interactive: InteractiveReply | None = None
    reaction: Reaction | None = None
    reply_to_provider_message_id: str | None = None
    #: Typed on the business phone itself (not through us): stored as outbound.
    from_me: bool = False
    #: Provider-side routing key (e.g. Meta's phone_number_id) for app-level webhooks.
    channel_ref: str | None = None
    #: The group or channel it was written in; None for the sender's direct chat.
    chat: Chat | None = None
    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def party(self) -> Sender:
        """Who the conversation is with: the sender in a direct chat, else the chat."""
        if self.chat is None or self.chat.kind is ChatKind.DIRECT:
            return self.sender
        return Sender(provider_user_id=self.chat.id, name=self.chat.title)

    @property
    def chat_kind(self) -> ChatKind:
        return self.chat.kind if self.chat is not None else ChatKind.DIRECT

    @model_validator(mode="after")
    def _payload_matches_type(self) -> InboundMessage:
        # Looked up in sets built once: on Python 3.11 each `MessageType.X` read costs
        # about as much as the rest of this check, and it runs for every message.
        kind = self.type
        if kind in MEDIA_TYPES and self.media is None:
            raise ValueError(f"a {kind} message needs media")
        part = _REQUIRED_PART.get(kind)
        if part is not None and getattr(self, part) is None:
            article = "an" if part[0] in "aeiou" else "a"
            raise ValueError(f"{article} {part} message needs {part}")
        return self

    def preview(self) -> str:
        """Short text for lists and notifications."""
        if self.text:
            return self.text
        if self.media and self.media.caption:
            return self.media.caption
        if self.interactive:
            return self.interactive.title
        if self.reaction:
            return self.reaction.emoji
        if self.location:
            return self.location.name or f"{self.location.latitude},{self.location.longitude}"
        if self.contacts:  # a shared contact card: who it is, as the customer's app shows it
            return "👤 " + ", ".join(contact.name for contact in self.contacts)
        return f"[{self.type.value}]"


# --- statuses --------------------------------------------------------------------------


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    #: Ours, never a provider's: a send whose worker died after the provider call started,
    #: on a provider that cannot be asked. It may or may not have reached the customer;
    #: a human decides (core never sends it again on its own).
    UNKNOWN = "unknown"


#: Statuses only move forward along this order; `failed` is terminal from any state
#: before `delivered` (a message already delivered or read cannot fail afterwards).
STATUS_RANK: Mapping[DeliveryStatus, int] = {
    DeliveryStatus.PENDING: 0,
    DeliveryStatus.UNKNOWN: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.READ: 3,
    DeliveryStatus.FAILED: 1,
}


def status_moves_forward(current: DeliveryStatus | str, new: DeliveryStatus | str) -> bool:
    """True when `new` may replace `current` (out-of-order webhooks never move back)."""
    cur, nxt = DeliveryStatus(current), DeliveryStatus(new)
    if cur is DeliveryStatus.FAILED:
        return False
    if nxt is DeliveryStatus.FAILED:
        return cur in (DeliveryStatus.PENDING, DeliveryStatus.UNKNOWN, DeliveryStatus.SENT)
    return STATUS_RANK[nxt] > STATUS_RANK[cur]


class ProviderError(_Model):
    code: str
    title: str = ""
    message: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class Pricing(_Model):
    """What the provider says it bills for this message (for cost dashboards)."""

    billable: bool | None = None
    pricing_model: str | None = None
    category: str | None = None
    conversation_id: str | None = None
    conversation_origin: str | None = None
    #: The adapter's estimate from its price table (provider invoices are the truth).
    cost: float | None = None
    currency: str | None = None


class StatusUpdate(_Model):
    provider_message_id: str
    status: DeliveryStatus
    timestamp: dt.datetime
    recipient: str | None = None
    error: ProviderError | None = None
    pricing: Pricing | None = None
    channel_ref: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _pending_is_ours(self) -> StatusUpdate:
        if self.status in (DeliveryStatus.PENDING, DeliveryStatus.UNKNOWN):
            raise ValueError("providers report sent, delivered, read or failed")
        return self


# --- connection (session providers) ----------------------------------------------------


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    QR_REQUIRED = "qr_required"
    UNHEALTHY = "unhealthy"


class ConnectionUpdate(_Model):
    state: ConnectionState
    detail: str = ""
    qr_code: str | None = None
    pairing_code: str | None = None
    me: str | None = None
    timestamp: dt.datetime | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class WebhookBatch(_Model):
    """Everything one provider call carried, normalised. Empty batches are fine."""

    messages: list[InboundMessage] = Field(default_factory=list)
    statuses: list[StatusUpdate] = Field(default_factory=list)
    connection: list[ConnectionUpdate] = Field(default_factory=list)
    #: Parts the adapter recognised as not for us (e.g. unknown phone_number_id), for logs.
    ignored: int = 0

    def is_empty(self) -> bool:
        return not (self.messages or self.statuses or self.connection)


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What storing one `WebhookBatch` did (`guiche.plugin.ingest_batch`), once committed."""

    #: Ids of the messages stored now (a redelivery stores nothing and counts a duplicate).
    stored: tuple[uuid.UUID, ...] = ()
    duplicates: int = 0
    statuses_applied: int = 0
    #: Statuses that changed nothing (older than what is stored, or for unknown messages).
    statuses_ignored: int = 0
    #: Conversations the batch opened (new, or a closed one reopened).
    opened: tuple[uuid.UUID, ...] = ()
    #: Provider ids of messages the database refused even alone (reported, not stored).
    failed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """What `guiche.plugin.import_history` did: messages written, messages skipped as
    already stored (from any source, or repeated within the import), conversations it
    had to create, and `conversations`: for every provider id imported, the conversation
    its sender's history is in on the channel (where it was written; for a duplicate,
    where the import would have put it), so a cataloger maps its chats to conversations
    without a query per chat."""

    inserted: int = 0
    duplicates: int = 0
    conversations_created: int = 0
    conversations: Mapping[str, uuid.UUID] = field(default_factory=dict, compare=False, repr=False)


class LoadedChannel(Protocol):
    """A configured, active channel as core hands it to a plugin (`load_channel`,
    `active_channels`, `channels_by_identity`): what it is and its ready adapter."""

    @property
    def info(self) -> ChannelInfo: ...

    @property
    def adapter(self) -> ChannelAdapter: ...


# --- outbound --------------------------------------------------------------------------


class Recipient(_Model):
    """Whom a send goes to: the conversation's contact, a person (its phone, else its
    provider user id) or, for a group or channel chat, the chat (`provider_user_id` is
    the chat's id, `chat_kind` says which)."""

    phone: str | None = None
    provider_user_id: str | None = None
    chat_kind: ChatKind = ChatKind.DIRECT

    @model_validator(mode="after")
    def _has_address(self) -> Recipient:
        if not self.phone and not self.provider_user_id:
            raise ValueError("a recipient needs a phone or a provider_user_id")
        return self


class OutboundMedia(_Model):
    kind: Literal["image", "audio", "video", "document", "sticker"]
    url: str | None = None
    provider_media_id: str | None = None
    data_base64: str | None = None
    mime_type: str | None = None
    filename: str | None = None
    caption: str | None = None

    @model_validator(mode="after")
    def _has_source(self) -> OutboundMedia:
        if not (self.url or self.provider_media_id or self.data_base64):
            raise ValueError("media needs a url, a provider_media_id or data_base64")
        return self


class TemplateParameter(_Model):
    type: Literal["text", "currency", "date_time", "image", "document", "video", "payload"] = "text"
    value: Any


class TemplateComponent(_Model):
    type: Literal["header", "body", "button", "footer"]
    parameters: list[TemplateParameter] = Field(default_factory=list)
    sub_type: str | None = None  # buttons: quick_reply | url
    index: int | None = None


class TemplateRef(_Model):
    name: str
    language: str = "pt_BR"
    components: list[TemplateComponent] = Field(default_factory=list)


class OutboundMessage(_Model):
    """What core asks an adapter to send. `message_id` is ours (idempotency key for providers)."""

    message_id: uuid.UUID
    to: Recipient
    kind: Literal["text", "media", "template"]
    text: str | None = None
    preview_url: bool = False
    media: OutboundMedia | None = None
    template: TemplateRef | None = None
    reply_to_provider_message_id: str | None = None

    @model_validator(mode="after")
    def _kind_has_content(self) -> OutboundMessage:
        if self.kind == "text" and not self.text:
            raise ValueError("a text message needs text")
        if self.kind == "media" and self.media is None:
            raise ValueError("a media message needs media")
        if self.kind == "template" and self.template is None:
            raise ValueError("a template message needs template")
        return self


class SendResult(_Model):
    provider_message_id: str
    status: DeliveryStatus = DeliveryStatus.SENT
    recipient: str | None = None  # the provider's id for the recipient, when it differs
    raw: dict[str, Any] = Field(default_factory=dict)


# --- what core hands to plugin event hooks ------------------------------------------------


class StoredMessage(_Model):
    """A message as stored by core (given to `guiche_on_message`)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    conversation_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    channel_id: uuid.UUID | None
    direction: Literal["in", "out"]
    type: str
    body: str
    status: str
    provider_message_id: str | None = None
    created_at: dt.datetime


class StoredStatus(_Model):
    """A delivery status that moved forward (given to `guiche_on_message_status`)."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    conversation_id: uuid.UUID | None
    status: DeliveryStatus
    error: ProviderError | None = None
    provider_message_id: str | None = None


class ConversationEvent(_Model):
    """A conversation transition (given to `guiche_on_conversation_event`)."""

    conversation_id: uuid.UUID
    tenant_id: uuid.UUID
    action: str  # opened | assigned | transferred | closed | reopened | expired | accepted
    status: str | None = None
    assignee_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    actor_id: uuid.UUID | None = None
    data: dict[str, Any] = Field(default_factory=dict)


# --- errors ----------------------------------------------------------------------------


class ChannelError(Exception):
    """Base for the typed errors adapters raise."""

    def __init__(self, message: str, *, code: str = "", details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or {}


class RetryableSendError(ChannelError):
    """Try again later (throttled, 5xx, timeout); `retry_after` seconds when the provider says."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        code: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after


class PermanentSendError(ChannelError):
    """Never retry: bad number, outside the window, invalid template... The message fails.

    `channel_unhealthy` marks the whole channel (e.g. an expired access token).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        details: dict[str, Any] | None = None,
        channel_unhealthy: bool = False,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.channel_unhealthy = channel_unhealthy


class WebhookAuthError(ChannelError):
    """The webhook's signature or secret is missing or wrong: answered 401, nothing stored."""


# --- the adapter -----------------------------------------------------------------------


class ChannelInfo(_Model):
    """The configured channel an adapter instance serves (a `channels` row, minus secrets)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str
    name: str
    phone: str | None = None
    #: Guichê's public base URL (`GUICHE_PUBLIC_URL`), for providers that are told where
    #: to post (e.g. in `provision()`), and core's webhook route for this very channel.
    public_url: str = ""
    webhook_url: str = ""
    #: A secret core generates for this channel (stable, never stored; empty where core
    #: has no secret key): give it to providers that echo a secret on every webhook
    #: (e.g. Telegram's `secret_token`) and compare it in `parse_webhook`.
    webhook_secret: str = Field(default="", repr=False)


class WebhookRequest(_Model):
    """A provider's HTTP call as the adapter sees it: raw bytes for signatures, no framework."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes = b""
    public_url: str = ""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


class FetchedMedia(_Model):
    data: bytes
    mime_type: str | None = None
    filename: str | None = None


class ReadReceipt(_Model):
    """Tell the provider we read the customer's messages up to this one (inbound)."""

    provider_message_id: str
    sender: Recipient


class ChannelAdapter(ABC):
    """One instance per configured channel. Subclasses set `config_model` and `capabilities`.

    `http` is the process's pooled httpx client (tests swap its transport); `config` is
    the validated, decrypted credentials model; `limiter` is the process's shared
    `guiche.ratelimit` limiter (Redis-backed when scaled out), for provider send rates
    that must hold across every worker. Core sets it after construction, so adapters
    that override `__init__` without it still work.
    """

    config_model: ClassVar[type[BaseModel]]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: Media types core's webhook route accepts for this channel (anything else: 415);
    #: `None` accepts any. Providers that post forms override it.
    webhook_media_types: ClassVar[tuple[str, ...] | None] = ("application/json",)

    def __init__(
        self, channel: ChannelInfo, config: BaseModel, *, http: Any = None, limiter: Any = None
    ) -> None:
        self.channel = channel
        self.config = config
        self.http = http
        self.limiter = limiter

    @classmethod
    def provider_identity(cls, config: BaseModel) -> str | None:
        """The provider account these credentials address (Meta's phone_number_id, an
        Evolution server's instance), or None to declare none.

        Core lets one active channel hold an identity platform-wide: another channel
        claiming it gets 409 unless `setup()` + `provision()` succeed with its own
        credentials, which must therefore prove control of that account (a token that
        can read the number, a key the instance accepts). App-level webhooks that route
        by it (`guiche.plugin.channels_by_identity`) reach only the holder, and never
        while its provisioning failed.
        """
        return None

    async def setup(self) -> None:
        """Called when the channel is created or enabled (Home Assistant's config-entry idea)."""
        return None

    async def unload(self) -> None:
        """Called when the channel is disabled or deleted."""
        return None

    @abstractmethod
    async def send(self, message: OutboundMessage) -> SendResult:
        """Send; raise `RetryableSendError` or `PermanentSendError` on failure."""

    async def lookup_sent(self, message: OutboundMessage) -> SendResult | None:
        """With `CAP_SEND_LOOKUP`: did the provider accept a send of `message.message_id`?

        Core calls it before sending a message whose earlier attempt may have reached the
        provider (its worker died mid-call). Return the first send's result, or None when
        the provider certainly has no such send (core then sends); raise
        `RetryableSendError` when the provider cannot tell right now.
        """
        raise NotImplementedError("declare CAP_SEND_LOOKUP only with lookup_sent")

    @abstractmethod
    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        """Verify the provider's signature/secret (else `WebhookAuthError`) and normalise."""

    async def verify_subscription(self, request: WebhookRequest) -> str:
        """Answer a provider's GET subscription challenge; raise `WebhookAuthError` to refuse."""
        raise WebhookAuthError("this channel type has no subscription check")

    async def provision(self) -> None:
        """Create provider-side resources (e.g. an Evolution instance and its webhook)."""
        return None

    async def connect(self) -> ConnectionUpdate | None:
        """Session providers: start or resume the session."""
        return None

    async def qr_code(self) -> ConnectionUpdate | None:
        """Session providers: the QR (or pairing code) to show the operator."""
        return None

    async def disconnect(self) -> None:
        """Session providers: log out and release provider-side resources."""
        return None

    async def fetch_media(self, media: Media) -> FetchedMedia:
        """Download an inbound attachment's bytes."""
        raise PermanentSendError("this channel type cannot fetch media", code="unsupported")

    async def mark_read(self, receipt: ReadReceipt) -> None:
        """Send a read receipt (adapters declaring `CAP_READ_RECEIPTS`); raise a
        `ChannelError` on failure. Core calls it when an agent marks a conversation read."""
        raise PermanentSendError("this channel type has no read receipts", code="unsupported")


__all__ = [
    "CAP_CUSTOMER_CARE_WINDOW",
    "CAP_IDEMPOTENT_SEND",
    "CAP_MEDIA",
    "CAP_QR_SESSION",
    "CAP_REACTIONS",
    "CAP_READ_RECEIPTS",
    "CAP_REPLY_CONTEXT",
    "CAP_SEND_LOOKUP",
    "CAP_TEMPLATES",
    "CUSTOMER_CARE_WINDOW",
    "ChannelAdapter",
    "ChannelError",
    "ChannelInfo",
    "Chat",
    "ChatKind",
    "ConnectionState",
    "ConnectionUpdate",
    "ConversationEvent",
    "DeliveryStatus",
    "FetchedMedia",
    "ImportOutcome",
    "InboundMessage",
    "IngestOutcome",
    "InteractiveReply",
    "LoadedChannel",
    "Location",
    "Media",
    "MessageType",
    "OutboundMedia",
    "OutboundMessage",
    "PermanentSendError",
    "Pricing",
    "ProviderError",
    "Reaction",
    "ReadReceipt",
    "Recipient",
    "RetryableSendError",
    "SendResult",
    "Sender",
    "SharedContact",
    "StatusUpdate",
    "StoredMessage",
    "StoredStatus",
    "TemplateComponent",
    "TemplateParameter",
    "TemplateRef",
    "WebhookAuthError",
    "WebhookBatch",
    "WebhookRequest",
    "status_moves_forward",
]
