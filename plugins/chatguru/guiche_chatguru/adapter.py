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
    ChatGuruApiError,
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
    login: str  # the email it logged in as, or "session cookie"
    account_id: str | None
    chats: int
    archived_chats: int
    phones: list[str]
    agents: list[str]
    api: str  # "verified" (the documented API took the key, account and phone) or "absent"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "account": {"panel": self.panel, "login": self.login, "account_id": self.account_id},
            "panel": self.panel,
            "chats": self.chats,
            "archived_chats": self.archived_chats,
            "phones": self.phones,
            "agents": self.agents,
            "api": self.api,
        }


#: A message id no account has: the documented API's answer about it shows whether it
#: took the key, account id and phone id (it names the one it refuses).
API_PROBE_ID = "guiche-connection-test"
_API_CREDENTIALS = ("key", "account", "phone", "token")


async def check_connection(client: ChatGuruClient) -> ConnectionReport:
    """Log in and read the chat list's first pages (active and archived): the chat
    counts, the phones and agents they show; then, when the documented API (for sends)
    is configured, ask it about a message that does not exist, to learn whether it takes
    the key, account id and phone id. Raises `ChatGuruError` (`bad_credentials` for a
    refused login or API key); stores nothing."""
    page = await client.chat_page(0)
    archived = await client.chat_page(0, archived=True)
    chats = [chat for chat in map(parse_chat, page.chats) if chat is not None]
    phones = sorted({chat.phone_id for chat in chats if chat.phone_id})
    agents = sorted({agent for chat in chats for agent in chat.agents})
    creds = client.credentials
    total = page.total if page.total is not None else len(chats)
    archived_total = archived.total if archived.total is not None else len(archived.chats)
    login = creds.email or "session cookie"
    return ConnectionReport(
        client.base,
        login,
        creds.account_id,
        total,
        archived_total,
        phones,
        agents,
        await _check_api(client),
    )


async def _check_api(client: ChatGuruClient) -> str:
    creds = client.credentials
    if not (creds.api_key and creds.account_id and creds.phone_id):
        return "absent"
    try:
        await client.message_status(API_PROBE_ID)
    except ChatGuruApiError as exc:
        refused = str(exc.details.get("description") or exc.message).lower()
        if any(word in refused for word in _API_CREDENTIALS):
            raise ChatGuruAuthError(
                f"the documented API refused the key, account id or phone id: {exc.message}",
                details=exc.details,
            ) from exc
        # it answered about the message itself: the credentials were taken
    return "verified"


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
