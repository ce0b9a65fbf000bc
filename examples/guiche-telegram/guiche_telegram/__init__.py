"""Guichê plugin `telegram`: a Telegram bot as a channel, on the public plugin API only.

A whole channel plugin to copy: text, photos and documents both ways, webhooks checked
by Telegram's secret-token header, core's webhook URL registered with `setWebhook` on
provisioning. Private chats only: group posts and edits are acknowledged and ignored.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
from typing import Any, ClassVar

import httpx
import orjson
from pydantic import BaseModel, Field, SecretStr

from guiche import channels as ch
from guiche.plugin import ChannelSpec, PluginInfo, hookimpl

API = "https://api.telegram.org"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class TelegramConfig(BaseModel):
    bot_token: SecretStr = Field(description="The token @BotFather gave the bot")
    webhook_secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)))


class TelegramAdapter(ch.ChannelAdapter):
    config_model: ClassVar[type[BaseModel]] = TelegramConfig
    capabilities: ClassVar[frozenset[str]] = frozenset({ch.CAP_MEDIA})
    config: TelegramConfig

    @classmethod
    def provider_identity(cls, config: BaseModel) -> str | None:
        token = TelegramConfig.model_validate(config.model_dump()).bot_token
        return token.get_secret_value().split(":")[0]  # the bot's id

    async def provision(self) -> None:
        secret = self.config.webhook_secret.get_secret_value()
        await self._call(
            "setWebhook", json={"url": self.channel.webhook_url, "secret_token": secret}
        )

    async def parse_webhook(self, request: ch.WebhookRequest) -> ch.WebhookBatch:
        given, secret = request.header(SECRET_HEADER), self.config.webhook_secret
        if not given or not hmac.compare_digest(given, secret.get_secret_value()):
            raise ch.WebhookAuthError("wrong or missing secret token")
        message = orjson.loads(request.body).get("message")
        if not message or message["chat"]["type"] != "private":
            return ch.WebhookBatch(ignored=1)  # edits, groups, channel posts, callbacks
        return ch.WebhookBatch(messages=[self._inbound(message)])

    def _inbound(self, message: dict[str, Any]) -> ch.InboundMessage:
        person, kind, media = message["from"], ch.MessageType.TEXT, None
        if photo := message.get("photo"):
            kind, media = ch.MessageType.IMAGE, {"file_id": photo[-1]["file_id"]}
        elif document := message.get("document"):
            kind, media = ch.MessageType.DOCUMENT, document
        return ch.InboundMessage(
            provider_message_id=f"{message['chat']['id']}:{message['message_id']}",  # per chat
            sender=ch.Sender(
                provider_user_id=str(person["id"]),
                name=" ".join(filter(None, (person.get("first_name"), person.get("last_name")))),
                username=person.get("username"),
            ),
            timestamp=dt.datetime.fromtimestamp(message["date"], dt.UTC),
            type=kind,
            text=message.get("text") or message.get("caption"),
            media=media
            and ch.Media(
                provider_media_id=media["file_id"],
                mime_type=media.get("mime_type", "image/jpeg"),
                filename=media.get("file_name"),
                caption=message.get("caption"),
            ),
            raw=message,
        )

    async def send(self, message: ch.OutboundMessage) -> ch.SendResult:
        chat, media = message.to.provider_user_id, message.media
        if chat is None:
            raise ch.PermanentSendError("Telegram addresses chats by id", code="no_chat_id")
        if media is None:
            sent = await self._call("sendMessage", json={"chat_id": chat, "text": message.text})
        else:
            method, field = (
                ("sendPhoto", "photo") if media.kind == "image" else ("sendDocument", "document")
            )
            fields = {"chat_id": chat, "caption": media.caption or ""}
            if media.data_base64:
                upload = (
                    media.filename or field,
                    base64.b64decode(media.data_base64),
                    media.mime_type,
                )
                sent = await self._call(method, data=fields, files={field: upload})
            else:
                source = media.url or media.provider_media_id
                sent = await self._call(method, json={**fields, field: source})
        return ch.SendResult(provider_message_id=f"{sent['chat']['id']}:{sent['message_id']}")

    async def fetch_media(self, media: ch.Media) -> ch.FetchedMedia:
        found = await self._call("getFile", json={"file_id": media.provider_media_id})
        url = f"{API}/file/bot{self.config.bot_token.get_secret_value()}/{found['file_path']}"
        response = await self._http("GET", url)
        if response.status_code != 200:
            raise ch.PermanentSendError("Telegram no longer has this file", code="media_gone")
        return ch.FetchedMedia(data=response.content, mime_type=media.mime_type)

    async def _call(self, method: str, **body: Any) -> Any:
        """One Bot API call: its `result`, or the typed error core retries or fails on."""
        url = f"{API}/bot{self.config.bot_token.get_secret_value()}/{method}"
        response = await self._http("POST", url, **body)
        is_json = response.headers.get("content-type", "").startswith("application/json")
        answer = response.json() if is_json else {}
        if answer.get("ok"):
            return answer["result"]
        status, reason = response.status_code, answer.get("description") or response.reason_phrase
        if status == 429 or status >= 500:
            delay = (answer.get("parameters") or {}).get("retry_after")
            raise ch.RetryableSendError(f"Telegram: {reason}", retry_after=delay, code=str(status))
        unhealthy = status == 401  # the token was revoked: the whole channel is down
        raise ch.PermanentSendError(
            f"Telegram: {reason}", code=str(status), channel_unhealthy=unhealthy
        )

    async def _http(self, method: str, url: str, **body: Any) -> httpx.Response:
        if self.http is None:
            raise ch.ChannelError("no HTTP client", code="no_http_client")
        try:
            return await self.http.request(method, url, **body)
        except httpx.HTTPError as exc:
            raise ch.RetryableSendError(f"Telegram unreachable: {exc!r}", code="network") from None


@hookimpl
def guiche_plugin_info() -> PluginInfo:
    return PluginInfo(name="telegram", version="0.1.0", description="A Telegram bot as a channel")


@hookimpl
def guiche_channel_types() -> list[ChannelSpec]:
    capabilities = TelegramAdapter.capabilities
    return [ChannelSpec("telegram", TelegramAdapter, TelegramConfig, capabilities, "Telegram bot")]
