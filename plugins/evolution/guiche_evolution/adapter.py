"""The Evolution API v2 channel adapter: webhooks in, messages out, instance lifecycle.

One adapter per configured channel (an Evolution *instance* on the company's server).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
import uuid
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import orjson
from pydantic import BaseModel, SecretStr

from guiche.channels import (
    CAP_MEDIA,
    CAP_QR_SESSION,
    CAP_REACTIONS,
    CAP_READ_RECEIPTS,
    CAP_REPLY_CONTEXT,
    ChannelAdapter,
    ChannelError,
    ChannelInfo,
    ConnectionState,
    ConnectionUpdate,
    FetchedMedia,
    Media,
    OutboundMessage,
    PermanentSendError,
    ReadReceipt,
    Recipient,
    RetryableSendError,
    SendResult,
    WebhookAuthError,
    WebhookBatch,
    WebhookRequest,
)
from guiche.plugin import whatsapp_web as wa_json
from guiche_evolution.client import SEND_TIMEOUT, EvolutionClient, EvolutionError
from guiche_evolution.config import EvolutionConfig
from guiche_evolution.parse import parse_payload, qr_update
from guiche_evolution.values import not_on_whatsapp

log = logging.getLogger("guiche.plugin.evolution")

CHANNEL_TYPE = "evolution"
SECRET_HEADER = "x-guiche-webhook-secret"
#: Configured in UPPER_SNAKE; delivered as `messages.upsert`, `send.message`, ...
WEBHOOK_EVENTS = (
    "MESSAGES_UPSERT",
    "MESSAGES_UPDATE",
    "CONNECTION_UPDATE",
    "QRCODE_UPDATED",
    "SEND_MESSAGE",
)
INTEGRATION = "WHATSAPP-BAILEYS"
_MEDIA_TYPES = {"image": "image", "video": "video", "audio": "audio", "document": "document"}


QR_PENDING = "the QR code is being generated"
#: channel id → when this process first got "no QR yet" (monotonic seconds).
_QR_WAITS: dict[uuid.UUID, float] = {}


class ProvisioningError(ChannelError):
    """Creating, linking or removing the Evolution instance failed; `message` says why
    in words an operator can act on. Provisioning is idempotent: retrying is safe."""


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())


def recipient_number(to: Recipient) -> str:
    """What Evolution's `number` field gets: a group's JID, else the phone's digits (Evolution
    restores its own JID form, Brazilian ninth digit included), else a `@lid` JID."""
    if to.provider_user_id and wa_json.is_group_jid(to.provider_user_id):
        return to.provider_user_id
    if to.phone and _digits(to.phone):
        return _digits(to.phone)
    assert to.provider_user_id is not None  # Recipient guarantees one of the two
    return to.provider_user_id


def _strip_data_uri(data: str) -> str:
    head, sep, tail = data.partition(",")
    return tail if sep and head.startswith("data:") else data


class EvolutionAdapter(ChannelAdapter):
    config_model: ClassVar[type[BaseModel]] = EvolutionConfig
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {CAP_MEDIA, CAP_QR_SESSION, CAP_REACTIONS, CAP_REPLY_CONTEXT, CAP_READ_RECEIPTS}
    )
    #: Pause between delete attempts while Evolution finishes a logout (tests set 0).
    delete_retry_delay: ClassVar[float] = 1.0
    #: How long a connection state of `open` is trusted before a send asks again.
    open_state_ttl: ClassVar[float] = 30.0
    #: How long the QR route waits for Evolution's first QR code before saying none comes.
    qr_deadline: ClassVar[float] = 60.0

    @classmethod
    def provider_identity(cls, config: BaseModel) -> str | None:
        """One channel per instance of an Evolution server, platform-wide (provisioning,
        which the server must accept for that instance, proves a second claim)."""
        settings = (
            config
            if isinstance(config, EvolutionConfig)
            else EvolutionConfig.model_validate(config.model_dump())
        )
        parts = urlsplit(settings.server_url)
        server = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
        return f"{server}#{settings.instance_name}"

    def __init__(self, channel: ChannelInfo, config: BaseModel, *, http: Any = None) -> None:
        super().__init__(channel, config, http=http)
        if not isinstance(config, EvolutionConfig):
            config = EvolutionConfig.model_validate(config.model_dump())
        self.settings: EvolutionConfig = config
        self.client = EvolutionClient(http, config)
        self._body_key_noted = False
        #: Until when an `open` connection state is trusted without asking again.
        self._open_until = 0.0

    # --- webhooks ----------------------------------------------------------------------

    def webhook_url(self) -> str:
        base = self.settings.webhook_base(self.channel.public_url)
        return f"{base}/webhooks/{CHANNEL_TYPE}/{self.channel.id}"

    def path_webhook_url(self) -> str:
        """For servers that drop webhook headers: the secret rides in the path instead
        (it then shows in access logs, which is why the header is preferred)."""
        secret = self.settings.webhook_secret.get_secret_value()
        base = self.settings.webhook_base(self.channel.public_url)
        return f"{base}{self._path_prefix()}{secret}"

    def _path_prefix(self) -> str:
        return f"/webhooks/{CHANNEL_TYPE}/channel/{self.channel.id}/"

    def _given_secret(self, request: WebhookRequest) -> str:
        header = (request.header(SECRET_HEADER) or "").strip()
        if header:
            return header
        prefix = self._path_prefix()
        return request.path[len(prefix) :].strip("/") if request.path.startswith(prefix) else ""

    def _check_secret(self, request: WebhookRequest) -> None:
        expected = self.settings.webhook_secret.get_secret_value().encode()
        given = self._given_secret(request).encode()
        if not given or not hmac.compare_digest(given, expected):
            raise WebhookAuthError("missing or wrong webhook secret")

    def _note_body_key(self, payload: dict[str, Any]) -> None:
        """Evolution puts the instance's token in the body `apikey` (or null, or "Apikey
        not found"). The secret already proved the sender, so a token we do not know is
        no reason to refuse: Evolution drops a message for good on a 401. It is logged
        once, as it means the stored `instance_token` is stale."""
        given = payload.get("apikey")
        if self._body_key_noted or not isinstance(given, str) or not given:
            return
        if not any(
            hmac.compare_digest(given.encode(), key.encode())
            for key in self.settings.accepted_body_keys()
        ):
            self._body_key_noted = True
            log.warning(
                "webhook apikey is not the stored instance token (accepted: the secret matched)",
                extra={"channel": str(self.channel.id)},
            )

    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        self._check_secret(request)
        try:
            payload = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the webhook body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise ValueError("the webhook body is not a JSON object")
        self._note_body_key(payload)
        instance = payload.get("instance")
        if isinstance(instance, str) and instance and instance != self.settings.instance_name:
            log.warning(
                "webhook for another instance ignored",
                extra={"channel": str(self.channel.id), "instance": instance},
            )
            return WebhookBatch(ignored=1)
        return parse_payload(payload, accept_groups=not self.settings.reject_groups)

    async def verify_subscription(self, request: WebhookRequest) -> str:
        raise WebhookAuthError("Evolution does not verify webhook subscriptions")

    # --- sending -------------------------------------------------------------------------

    def _send_body(self, message: OutboundMessage) -> tuple[str, dict[str, Any]]:
        number = recipient_number(message.to)
        if message.kind == "text":
            body: dict[str, Any] = {
                "number": number,
                "text": message.text,
                "linkPreview": message.preview_url,
            }
            action = "message/sendText"
        elif message.kind == "media":
            media = message.media
            assert media is not None  # OutboundMessage guarantees it
            if media.data_base64:
                source = _strip_data_uri(media.data_base64.strip())
            elif media.url:
                source = media.url
            else:
                raise PermanentSendError(
                    "Evolution sends media from a URL or inline bytes, not a provider media id",
                    code="media_source_unsupported",
                )
            if media.kind == "sticker":
                action, body = "message/sendSticker", {"number": number, "sticker": source}
            else:
                action = "message/sendMedia"
                body = {"number": number, "mediatype": _MEDIA_TYPES[media.kind], "media": source}
                if media.mime_type:
                    body["mimetype"] = media.mime_type
                if media.caption:
                    body["caption"] = media.caption
                if media.filename or media.kind == "document":
                    body["fileName"] = media.filename or "document"
        else:
            raise PermanentSendError(
                "WhatsApp through Evolution has no message templates: send text instead",
                code="templates_unsupported",
            )
        if message.reply_to_provider_message_id:
            body["quoted"] = {"key": {"id": message.reply_to_provider_message_id}}
        return self.client.instance_path(action), body

    async def connection_state(self) -> str:
        """Evolution's own word for the session: `open`, `connecting`, `close`, or ""
        when the server has the instance but no session loaded (e.g. after a restart)."""
        path = self.client.instance_path("instance/connectionState")
        answer = await self.client.call("GET", path)
        instance = answer.get("instance") if isinstance(answer, dict) else None
        state = instance.get("state") if isinstance(instance, dict) else None
        return str(state or "").lower()

    async def _state_or_none(self) -> str | None:
        try:
            return await self.connection_state()
        except EvolutionError:
            return None

    async def _require_open(self) -> None:
        """Send only on a linked phone: anything else fails at once with
        `channel_not_connected` (Evolution would answer 500s that look transient).
        An `open` answer is trusted for `open_state_ttl` seconds."""
        if time.monotonic() < self._open_until:
            return
        try:
            state = await self.connection_state()
        except EvolutionError as exc:
            raise _send_error(exc) from None
        if state != "open":
            raise _not_connected(state, None)
        self._open_until = time.monotonic() + self.open_state_ttl

    async def send(self, message: OutboundMessage) -> SendResult:
        path, body = self._send_body(message)
        await self._require_open()
        try:
            answer = await self.client.call("POST", path, json=body, seconds=SEND_TIMEOUT)
        except EvolutionError as exc:
            if _session_down(exc):
                self._open_until = 0.0
                raise _not_connected(await self._state_or_none(), exc) from None
            raise _send_error(exc) from None
        key = answer.get("key") if isinstance(answer, dict) else None
        provider_id = wa_json.text_or_none(key.get("id")) if isinstance(key, dict) else None
        if not provider_id:
            # Evolution may well have sent it: retrying could send it twice.
            raise PermanentSendError(
                "Evolution accepted the message but returned no message id",
                code="unexpected_response",
                details={"body": str(answer)[:500]},
            )
        return SendResult(
            provider_message_id=provider_id,
            recipient=wa_json.text_or_none(key.get("remoteJid")) if isinstance(key, dict) else None,
            raw=answer if isinstance(answer, dict) else {},
        )

    async def mark_read(self, receipt: ReadReceipt) -> None:
        """`/chat/markMessageAsRead/{instance}` for the customer's message. The key needs the
        chat's JID: the sender's own JID when we have it (`@lid` and the ninth digit are
        Evolution's to know), else the phone's."""
        sender = receipt.sender
        jid = sender.provider_user_id if sender.provider_user_id else None
        if jid is None or "@" not in jid:
            jid = f"{_digits(sender.phone or jid or '')}@s.whatsapp.net"
        body = {
            "readMessages": [{"remoteJid": jid, "fromMe": False, "id": receipt.provider_message_id}]
        }
        try:
            await self.client.call(
                "POST", self.client.instance_path("chat/markMessageAsRead"), json=body
            )
        except EvolutionError as exc:
            raise _send_error(exc) from None

    # --- instance lifecycle --------------------------------------------------------------

    def webhook_config(self) -> dict[str, Any]:
        """The v2 `/webhook/set` body: nested under `webhook`, our secret as a header."""
        return {
            "webhook": {
                "enabled": True,
                "url": self.webhook_url(),
                "byEvents": False,
                "base64": True,
                "headers": {SECRET_HEADER: self.settings.webhook_secret.get_secret_value()},
                "events": list(WEBHOOK_EVENTS),
            }
        }

    def instance_config(self) -> dict[str, Any]:
        """The `/instance/create` body. The QR is requested later, once the webhook is set."""
        return {
            "instanceName": self.settings.instance_name,
            "integration": INTEGRATION,
            "token": self.settings.instance_token.get_secret_value(),
            "qrcode": False,
            "groupsIgnore": self.settings.reject_groups,
            "alwaysOnline": self.settings.always_online,
            "readMessages": self.settings.read_receipts,
            "readStatus": False,
            "syncFullHistory": False,
        }

    async def provision(self) -> None:
        """Create the instance, or adopt the one that already has this name (a retry, an
        earlier channel, one made in Evolution's manager), then point its webhook here."""
        try:
            await self.client.call("POST", "/instance/create", json=self.instance_config())
        except EvolutionError as exc:
            # Evolution checks the name before the key: 403 "in use" whatever the key,
            # 401 only for a free name, so a 401 here means "not the global key".
            if exc.status == 403 and "in use" in exc.message:
                await self._adopt_instance()
            elif exc.status == 401:
                await self._adopt_instance(create_refused=exc)
            else:
                raise _provisioning_error("create the Evolution instance", exc) from None
        try:
            await self.client.call(
                "POST", self.client.instance_path("webhook/set"), json=self.webhook_config()
            )
        except EvolutionError as exc:
            raise _provisioning_error("set the instance's webhook", exc) from None

    async def _adopt_instance(self, create_refused: EvolutionError | None = None) -> None:
        """Reuse an existing instance: learn its real token from `fetchInstances` (which
        takes the global key or the instance's own) so the stored config is the truth.

        A refused key is said as such, not as a later "instance does not exist"."""
        name = self.settings.instance_name
        try:
            found = await self.client.call(
                "GET", f"/instance/fetchInstances?instanceName={quote(name, safe='')}"
            )
        except EvolutionError as exc:
            if exc.status == 401:
                raise _key_refused(create_refused or exc, name) from None
            if exc.status == 404 and create_refused is not None:
                raise _key_refused(create_refused, name) from None
            raise _provisioning_error("look up the existing instance", exc) from None
        rows = found if isinstance(found, list) else [found]
        row = next((r for r in rows if isinstance(r, dict) and r.get("name") == name), None)
        if row is None:
            if create_refused is not None:
                raise _key_refused(create_refused, name)
            raise ProvisioningError(
                f"Evolution says instance {name!r} exists but does not list it",
                code="instance_not_listed",
            )
        token = wa_json.text_or_none(row.get("token"))
        log.info(
            "reusing an existing Evolution instance",
            extra={"channel": str(self.channel.id), "integration": row.get("integration")},
        )
        if token and len(token) >= 16 and token != self.settings.instance_token.get_secret_value():
            self.settings.instance_token = SecretStr(token)

    async def qr_code(self) -> ConnectionUpdate:
        """Start (or resume) the WhatsApp session: the QR or pairing code to scan, or
        CONNECTED when the phone is already linked."""
        try:
            answer = await self.client.call("GET", self.client.instance_path("instance/connect"))
        except EvolutionError as exc:
            raise _provisioning_error("get the QR code", exc) from None
        if not isinstance(answer, dict):
            raise ProvisioningError("Evolution answered /instance/connect with no JSON object")
        if answer.get("error"):
            reason = wa_json.text_or_none(str(answer.get("message") or "")) or "unknown error"
            raise ProvisioningError(
                f"Evolution could not start the session: {reason}", code="connect_failed"
            )
        instance = answer.get("instance")
        if isinstance(instance, dict):
            state = str(instance.get("state") or instance.get("status") or "").lower()
            if state == "open":
                _QR_WAITS.pop(self.channel.id, None)
                return ConnectionUpdate(state=ConnectionState.CONNECTED, raw=answer)
            if isinstance(answer.get("qrcode"), dict):
                return qr_update(answer["qrcode"])
            return ConnectionUpdate(state=ConnectionState.CONNECTING, raw=answer)
        update = qr_update(answer)
        if update.qr_code or update.pairing_code or update.raw.get("code"):
            _QR_WAITS.pop(self.channel.id, None)
            return update
        return self._no_qr_yet(answer)

    def _no_qr_yet(self, answer: dict[str, Any]) -> ConnectionUpdate:
        """`{"count": 0}`: a QR is on its way, or never comes (the server cannot reach
        WhatsApp, and loops). Past `qr_deadline` seconds of asking, say so; the next
        request starts a new wait. The clock is per process (adapters are rebuilt)."""
        now = time.monotonic()
        started = _QR_WAITS.setdefault(self.channel.id, now)
        if now - started < self.qr_deadline:
            return ConnectionUpdate(state=ConnectionState.CONNECTING, detail=QR_PENDING, raw=answer)
        del _QR_WAITS[self.channel.id]
        return ConnectionUpdate(
            state=ConnectionState.UNHEALTHY,
            detail=(
                f"no QR code after {self.qr_deadline:g} s: the Evolution server cannot reach "
                "WhatsApp (check its internet access, proxy and logs), then ask for the QR "
                "code again"
            ),
            raw=answer,
        )

    async def connect(self) -> ConnectionUpdate:
        return await self.qr_code()

    async def disconnect(self) -> None:
        """Log the phone out and delete the instance; an instance already gone is fine."""
        try:
            await self.client.call("DELETE", self.client.instance_path("instance/logout"))
        except EvolutionError as exc:
            if exc.status not in (400, 404):  # 400: not connected; 404: no such instance
                raise _provisioning_error("log the instance out", exc) from None
        for attempt in range(3):
            try:
                await self.client.call("DELETE", self.client.instance_path("instance/delete"))
                return
            except EvolutionError as exc:
                if exc.status == 404:
                    return
                # 400 "needs to be disconnected": Evolution finishes the logout in the background.
                if exc.status != 400 or attempt == 2:
                    raise _provisioning_error("delete the Evolution instance", exc) from None
            await asyncio.sleep(self.delete_retry_delay)

    # --- media ---------------------------------------------------------------------------

    async def fetch_media(self, media: Media) -> FetchedMedia:
        """Inline bytes when the webhook carried them, else Evolution's decrypted copy."""
        encoded = media.data_base64
        mime, filename = media.mime_type, media.filename
        if not encoded:
            if not media.provider_media_id:
                raise PermanentSendError("this attachment has no message id", code="no_media")
            try:
                answer = await self.client.call(
                    "POST",
                    self.client.instance_path("chat/getBase64FromMediaMessage"),
                    json={"message": {"key": {"id": media.provider_media_id}}},
                    seconds=SEND_TIMEOUT,
                )
            except EvolutionError as exc:
                raise _send_error(exc) from None
            answer = answer if isinstance(answer, dict) else {}
            encoded = wa_json.text_or_none(answer.get("base64"))
            mime = wa_json.text_or_none(answer.get("mimetype")) or mime
            filename = wa_json.text_or_none(answer.get("fileName")) or filename
            if not encoded:
                raise PermanentSendError("Evolution returned no media bytes", code="no_media")
        try:
            data = base64.b64decode(_strip_data_uri(encoded), validate=True)
        except (binascii.Error, ValueError):
            raise PermanentSendError(
                "the media bytes are not valid base64", code="bad_media"
            ) from None
        return FetchedMedia(data=data, mime_type=mime, filename=filename)


#: What Evolution 2.3.6 answers (HTTP 500) when a send finds no live WhatsApp session:
#: Baileys' "Connection Closed" while connecting, a TypeError when never started.
_SESSION_DOWN = ("Connection Closed", "(reading 'onWhatsApp')")
NOT_CONNECTED = "channel_not_connected"


def _session_down(exc: EvolutionError) -> bool:
    return exc.status == 500 and any(sign in exc.message for sign in _SESSION_DOWN)


def _not_connected(state: str | None, exc: EvolutionError | None) -> PermanentSendError:
    """Fail the message now, and mark the channel so agents see why (retrying a send on
    an unlinked phone only delays the same failure)."""
    said = f"Evolution reports {state!r}" if state else "no WhatsApp session on Evolution"
    details: dict[str, Any] = {"evolution_state": state}
    if exc is not None:
        details |= {"status": exc.status, "body": exc.body}
    return PermanentSendError(
        f"WhatsApp is not connected on this channel ({said}): link the phone with the "
        "channel's QR code, then send again",
        code=NOT_CONNECTED,
        details=details,
        channel_unhealthy=True,
    )


def _send_error(exc: EvolutionError) -> RetryableSendError | PermanentSendError:
    """Meta-like mapping: transient → retry; 401 (key refused) and 404 (the instance is
    gone) → the channel is unhealthy; any other refusal fails this message with
    Evolution's own reason."""
    details = {"status": exc.status, "body": exc.body} if exc.status else {}
    if exc.retryable:
        return RetryableSendError(
            exc.message, retry_after=exc.retry_after, code=exc.code, details=details
        )
    if exc.status in (401, 404):
        return PermanentSendError(
            exc.message, code=exc.code, details=details, channel_unhealthy=True
        )
    code = "not_on_whatsapp" if not_on_whatsapp(exc.body) else exc.code
    return PermanentSendError(exc.message, code=code, details=details)


_ADVICE = {
    401: "the Evolution server refused the API key",
    403: "the API key may not do this (use the global API key)",
    404: "the instance does not exist on the Evolution server",
}


def _key_refused(exc: EvolutionError, instance: str) -> ProvisioningError:
    return ProvisioningError(
        f"The API key was refused by the Evolution server ({exc.message}). Enter the "
        "server's global API key (AUTHENTICATION_API_KEY), or "
        f"the token of instance {instance!r} if it already exists.",
        code="api_key_refused",
        details=exc.details,
    )


def _provisioning_error(step: str, exc: EvolutionError) -> ProvisioningError:
    advice = _ADVICE.get(exc.status or 0, "")
    message = f"Could not {step}: {exc.message}" + (f" ({advice})" if advice else "")
    return ProvisioningError(message, code=exc.code, details=exc.details)
