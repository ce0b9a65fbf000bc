"""The `chatguru` channel type: one ChatGuru account is one Guichê channel.

Being a channel is what puts ChatGuru's history in core's timeline: the catalog and the
poller store messages through `import_history` / `ingest_batch` for this channel, so
contacts follow core's E.164 rules (Brazil's ninth digit included) and a phone's
ChatGuru history sits beside its live WhatsApp channels. Core keeps the credentials
encrypted and shows them masked.

ChatGuru posts no webhooks (history is pulled), so `parse_webhook` refuses everything.
Replies go out through the documented API's `message_send` when its key is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from guiche.channels import (
    ChannelAdapter,
    ChannelError,
    OutboundMessage,
    PermanentSendError,
    RetryableSendError,
    SendResult,
    WebhookAuthError,
    WebhookBatch,
    WebhookRequest,
)
from guiche_chatguru.client import (
    ChatGuruAuthError,
    ChatGuruClient,
    ChatGuruError,
    ChatGuruUnavailable,
    ChatGuruUnreachable,
)
from guiche_chatguru.config import ChatGuruCredentials
from guiche_chatguru.parse import parse_chat

CHANNEL_TYPE = "chatguru"


@dataclass(frozen=True)
class ConnectionReport:
    """What a connection test found."""

    panel: str
    chats: int
    phones: list[str]
    agents: list[str]
    api: str  # "configured" or "absent": the documented API's key, account and phone

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "panel": self.panel,
            "chats": self.chats,
            "phones": self.phones,
            "agents": self.agents,
            "api": self.api,
        }


async def check_connection(client: ChatGuruClient) -> ConnectionReport:
    """Log in and read the first chat-list page: the chat count, the phones and agents it
    shows, and whether the documented API (for sends) is configured. Raises
    `ChatGuruError`; stores nothing."""
    page = await client.chat_page(0)
    chats = [chat for chat in map(parse_chat, page.chats) if chat is not None]
    phones = sorted({chat.phone_id for chat in chats if chat.phone_id})
    agents = sorted({agent for chat in chats for agent in chat.agents})
    creds = client.credentials
    api = "configured" if creds.api_key and creds.account_id and creds.phone_id else "absent"
    total = page.total if page.total is not None else len(chats)
    return ConnectionReport(client.base, total, phones, agents, api)


def rate_key(tenant_id: Any) -> str:
    """The company's one request budget (`requests_per_second` is a company setting): its
    accounts, and its connection tests, share it, so more accounts never mean more load
    on the panel."""
    return f"chatguru:{tenant_id}"


class ChatGuruAdapter(ChannelAdapter):
    config_model: ClassVar[type[BaseModel]] = ChatGuruCredentials
    capabilities: ClassVar[frozenset[str]] = frozenset()

    _client: ChatGuruClient | None = None

    def client(self, requests_per_second: float | None = None) -> ChatGuruClient:
        """This account's client; it keeps the session cookie for the adapter's life."""
        if self._client is None:
            assert isinstance(self.config, ChatGuruCredentials)
            self._client = ChatGuruClient(
                self.config,
                self.http,
                limiter=self.limiter,
                rate_key=rate_key(self.channel.tenant_id),
            )
        if requests_per_second is not None:
            self._client.requests_per_second = requests_per_second
        return self._client

    async def provision(self) -> None:
        """Prove the credentials work before the channel is usable."""
        try:
            await check_connection(self.client())
        except ChatGuruError as exc:
            raise ChannelError(exc.message, code=exc.code) from exc

    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        raise WebhookAuthError("ChatGuru posts no webhooks: its history is polled")

    async def send(self, message: OutboundMessage) -> SendResult:
        if message.kind != "text" or not message.text:
            raise PermanentSendError("ChatGuru's API sends text only", code="unsupported")
        number = (message.to.phone or message.to.provider_user_id or "").lstrip("+")
        try:
            answer = await self.client().message_send(number.split("@", 1)[0], message.text)
        except ChatGuruUnavailable as exc:
            raise RetryableSendError(exc.message) from exc
        except ChatGuruUnreachable as exc:
            raise RetryableSendError(exc.message) from exc
        except ChatGuruAuthError as exc:
            raise PermanentSendError(exc.message, channel_unhealthy=True) from exc
        except ChatGuruError as exc:
            raise PermanentSendError(exc.message, code=exc.code) from exc
        message_id = answer.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise PermanentSendError("ChatGuru accepted the send without a message id")
        return SendResult(provider_message_id=message_id, raw=answer)
