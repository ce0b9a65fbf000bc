"""The example Telegram channel plugin: the strict contract suite, then the whole loop
through the real app (provisioning registers the webhook, a photo in, a reply out)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from guiche_telegram import SECRET_HEADER, TelegramAdapter, TelegramConfig

from guiche.channels import ChannelInfo, OutboundMessage, Recipient, WebhookRequest
from guiche.foundation.crypto import webhook_secret
from guiche.models import TenantPlugin
from guiche.runtime.services import SERVICES
from guiche.testing import ChannelContract
from tests.conftest import login
from tests.core.conversations.conftest import fetch

TOKEN = "123456:ABC-DEF"
SECRET = "telegram-secret-0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64  # Telegram's photos are JPEG


@dataclass
class FakeTelegram:
    """The Bot API as an httpx MockTransport handler: records calls, scripts failures."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    next_id: int = 100

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == f"/file/bot{TOKEN}/photos/file_1.jpg":
            return httpx.Response(
                200, content=JPEG, headers={"content-type": "application/octet-stream"}
            )
        if not path.startswith(f"/bot{TOKEN}/"):
            return httpx.Response(
                401, json={"ok": False, "error_code": 401, "description": "Unauthorized"}
            )
        method = path.rsplit("/", 1)[1]
        body = (
            orjson.loads(request.content)
            if request.headers.get("content-type") == "application/json"
            else {}
        )
        self.calls.append((method, body or request.content))
        if self.failures and method.startswith("send"):
            status, answer = self.failures.pop(0)
            return httpx.Response(status, json={"ok": False, "error_code": status, **answer})
        if method == "getFile":
            return httpx.Response(
                200, json={"ok": True, "result": {"file_path": "photos/file_1.jpg"}}
            )
        if method == "setWebhook":
            return httpx.Response(200, json={"ok": True, "result": True})
        self.next_id += 1
        result = {"message_id": self.next_id, "chat": {"id": body.get("chat_id", 42)}}
        return httpx.Response(200, json={"ok": True, "result": result})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


def update(message: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"update_id": 1, **extra}
    if message is not None:
        body["message"] = message
    return body


def text(
    chat: int = 42, number: int = 7, words: str = "oi", when: int = 1764950400
) -> dict[str, Any]:
    return {
        "message_id": number,
        "from": {"id": chat, "first_name": "Ana", "last_name": "Souza", "username": "ana"},
        "chat": {"id": chat, "type": "private"},
        "date": when,
        "text": words,
    }


def hook(body: dict[str, Any], secret: str | None = SECRET) -> WebhookRequest:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return WebhookRequest(
        method="POST", path="/", headers=headers, query={}, body=orjson.dumps(body)
    )


# --- the strict contract suite --------------------------------------------------------------


class TestTelegramContract(ChannelContract):
    @pytest.fixture
    def fake(self) -> FakeTelegram:
        return FakeTelegram()

    @pytest.fixture
    def adapter(self, fake: FakeTelegram) -> TelegramAdapter:
        info = ChannelInfo(
            id=uuid.uuid4(),
            tenant_id=uuid.uuid4(),
            type="telegram",
            name="Bot",
            webhook_secret=SECRET,
        )
        config = TelegramConfig.model_validate({"bot_token": TOKEN})
        return TelegramAdapter(info, config, http=fake.client())

    @pytest.fixture
    def valid_webhooks(self) -> list[WebhookRequest]:
        photo = {**text(), "text": None, "photo": [{"file_id": "small"}, {"file_id": "big"}]}
        return [hook(update(text())), hook(update(photo)), hook(update(text(number=8)))]

    @pytest.fixture
    def webhook_secrets(self) -> list[tuple[str, str]]:
        return [("header", SECRET_HEADER)]

    @pytest.fixture
    def outbound_text(self) -> OutboundMessage:
        return OutboundMessage(
            message_id=uuid.uuid4(), to=Recipient(provider_user_id="42"), kind="text", text="Olá"
        )

    @pytest.fixture
    def provider_fails(self, fake: FakeTelegram) -> Callable[[str], float | None]:
        answers = {
            "rate_limited": (
                429,
                {"description": "Too Many Requests", "parameters": {"retry_after": 11}},
            ),
            "server_error": (502, {"description": "Bad Gateway"}),
            "unauthorized": (401, {"description": "Unauthorized"}),
            "forbidden": (403, {"description": "Forbidden: bot was blocked by the user"}),
        }

        def fail(scenario: str) -> float | None:
            fake.failures.append(answers[scenario])
            return 11.0 if scenario == "rate_limited" else None

        return fail

    @pytest.fixture
    def same_native_id_in_two_chats(self) -> tuple[WebhookRequest, WebhookRequest]:
        return hook(update(text(chat=42, number=5))), hook(update(text(chat=43, number=5)))

    @pytest.fixture
    def edited_message(self) -> tuple[WebhookRequest, WebhookRequest]:
        return hook(update(text(number=9))), hook(
            update(edited_message=text(number=9, words="oi!"))
        )


# --- the whole loop through the app ---------------------------------------------------------


@pytest.fixture
def fake() -> FakeTelegram:
    return FakeTelegram()


@pytest.fixture
async def client(make_client: Any, fake: FakeTelegram, tmp_path: Any) -> Any:
    app = await make_client(
        public_url="https://chat.example.com",
        storage_path=str(tmp_path / "media"),
        send_retry_base_seconds=0.0,
        send_retry_max_seconds=0.0,
    )
    services = app.server.app[SERVICES]
    if services.http is not None:
        await services.http.aclose()
    services.http = fake.client()
    return app


def channel_secret(client: Any, channel_id: str) -> str:
    """The webhook secret core generated for the channel (what Telegram was told)."""
    settings = client.server.app[SERVICES].settings
    return webhook_secret(settings.secret_key.get_secret_value(), uuid.UUID(channel_id))


async def settle(client: Any) -> None:
    services = client.server.app[SERVICES]
    while services.background or services.tasks.broker._running_tasks:
        await services.wait_background()
        await services.tasks.broker.wait_all()


async def test_a_photo_in_a_reply_out(client: Any, fake: FakeTelegram, make_company: Any) -> None:
    company = await make_company()
    await TenantPlugin.insert(
        TenantPlugin(tenant=company.tenant_id, plugin="telegram", enabled=True, settings={})
    )
    headers = await login(client, company.owner)
    resp = await client.post(
        "/api/v1/channels",
        json={
            "type": "telegram",
            "name": "Bot",
            "credentials": {"bot_token": TOKEN},
        },
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    channel_id = (await resp.json())["id"]
    secret = channel_secret(client, channel_id)
    registered = [body for method, body in fake.calls if method == "setWebhook"]
    assert registered == [
        {"url": f"https://chat.example.com/webhooks/telegram/{channel_id}", "secret_token": secret}
    ]

    photo = {**text(), "text": None, "caption": "meu pedido", "photo": [{"file_id": "f1"}]}
    url = f"/webhooks/telegram/{channel_id}"
    forged = await client.post(
        url, data=orjson.dumps(update(photo)), headers={SECRET_HEADER: secret[:-1]}
    )
    assert forged.status == 401
    resp = await client.post(
        url,
        data=orjson.dumps(update(photo)),
        headers={SECRET_HEADER: secret, "Content-Type": "application/json"},
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["messages"] == 1

    [message] = await fetch(
        "SELECT id, conversation, body FROM messages WHERE channel = {}", uuid.UUID(channel_id)
    )
    assert message["body"] == "meu pedido"
    media = await client.get(f"/api/v1/messages/{message['id']}/media", headers=headers)
    assert media.status == 200, await media.text()
    download = await client.get((await media.json())["download_url"], headers=headers)
    assert await download.read() == JPEG

    upload = await client.post("/api/v1/media", data=_multipart(PNG), headers=headers)
    assert upload.status == 201, await upload.text()
    for body in (
        {"type": "text", "text": "Recebemos, obrigado!"},
        {"type": "media", "media_id": (await upload.json())["id"], "caption": "recibo"},
    ):
        resp = await client.post(
            f"/api/v1/conversations/{message['conversation']}/messages", json=body, headers=headers
        )
        assert resp.status == 202, await resp.text()
    await settle(client)
    sends = [(method, body) for method, body in fake.calls if method.startswith("send")]
    assert sends[0] == ("sendMessage", {"chat_id": "42", "text": "Recebemos, obrigado!"})
    assert sends[1][0] == "sendPhoto"
    assert PNG in sends[1][1]  # uploaded as multipart bytes, with its caption
    assert b"recibo" in sends[1][1]
    statuses = await fetch(
        "SELECT status FROM messages WHERE conversation = {} AND direction = 'out'",
        message["conversation"],
    )
    assert [row["status"] for row in statuses] == ["sent", "sent"]


def _multipart(data: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="recibo.png", content_type="image/png")
    return form
