"""Sending through the Graph API (httpx MockTransport): request bodies, error mapping by
`error.code`, media upload and download, the per-number throughput limit."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import orjson
import pytest
from guiche_meta_cloud.adapter import MetaCloudAdapter
from guiche_meta_cloud.config import MetaCloudConfig
from guiche_meta_cloud.throughput import bucket_key, take_send_token

from guiche.channels import (
    CAP_READ_RECEIPTS,
    ChannelError,
    ChannelInfo,
    FetchedMedia,
    Media,
    OutboundMedia,
    OutboundMessage,
    PermanentSendError,
    ReadReceipt,
    Recipient,
    RetryableSendError,
    SendResult,
    TemplateComponent,
    TemplateParameter,
    TemplateRef,
    WebhookRequest,
)
from guiche.ratelimit import MemoryRateLimiter
from guiche.testing import ChannelContract
from tests.plugins.meta_cloud.conftest import (
    FIXTURE_PHONE_ID,
    FakeGraph,
    config,
    fixture_bytes,
    fixture_json,
    sign,
)

CUSTOMER = "+5511987654321"


def adapter_for(graph: FakeGraph | None = None, limiter: Any = None, **overrides: Any) -> Any:
    info = ChannelInfo(id=uuid.uuid4(), tenant_id=uuid.uuid4(), type="meta_cloud", name="WA")
    http = (graph or FakeGraph()).client()
    cfg = MetaCloudConfig.model_validate(config(**overrides))
    return MetaCloudAdapter(info, cfg, http=http, limiter=limiter)


def text(body: str = "Olá", **extra: Any) -> OutboundMessage:
    return OutboundMessage(
        message_id=uuid.uuid4(), to=Recipient(phone=CUSTOMER), kind="text", text=body, **extra
    )


def without_trace(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "biz_opaque_callback_data"}


def signed_webhook(name: str) -> WebhookRequest:
    """A fixture body as Meta posts it, signed with the app secret."""
    body = fixture_bytes(name)
    headers = {"X-Hub-Signature-256": sign(body)}
    return WebhookRequest(method="POST", path="/", headers=headers, query={}, body=body)


class TestMetaCloudContract(ChannelContract):
    """guiche.testing's shared channel contract, run against this adapter."""

    @pytest.fixture
    def adapter(self, graph: FakeGraph) -> MetaCloudAdapter:
        return adapter_for(graph)

    @pytest.fixture
    def valid_webhooks(self) -> list[WebhookRequest]:
        names = [
            "webhook_text.json",
            "webhook_image.json",
            "webhook_contacts.json",
            "webhook_order.json",
            "webhook_username_user.json",
            "webhook_status_failed.json",
            "webhook_batch_many.json",
        ]
        return [signed_webhook(name) for name in names]

    @pytest.fixture
    def forged_webhook(self) -> WebhookRequest:
        body = fixture_bytes("webhook_text.json")
        return WebhookRequest(
            method="POST",
            path="/",
            headers={"X-Hub-Signature-256": sign(body + b"\n")},
            query={},
            body=body,
        )

    @pytest.fixture
    def outbound_text(self) -> OutboundMessage:
        return text()

    @pytest.fixture
    def webhook_secrets(self) -> list[tuple[str, str]]:
        return [("header", "X-Hub-Signature-256")]

    @pytest.fixture
    def provider_fails(self, graph: FakeGraph) -> Any:
        forbidden = orjson.dumps(
            {"error": {"message": "(#10) Application does not have permission", "code": 10}}
        )

        def fail(scenario: str) -> float | None:
            if scenario == "rate_limited":
                graph.fail_next(429, fixture_bytes("error_130429.json"), {"Retry-After": "17"})
                return 17.0
            if scenario == "server_error":
                graph.fail_next(500, fixture_bytes("error_500.json"))
            elif scenario == "unauthorized":
                graph.fail_next(401, fixture_bytes("error_190.json"))
            else:
                graph.fail_next(403, forbidden)
            return None

        return fail

    @pytest.fixture
    def status_progression(self) -> list[WebhookRequest]:
        names = ["webhook_status_sent.json", "webhook_status_delivered.json"]
        names.append("webhook_status_read.json")
        return [signed_webhook(name) for name in names]


async def test_text_body_matches_metas_shape(graph: FakeGraph) -> None:
    expected = fixture_json("send_request_text.json")
    message = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone="+" + expected["to"]),
        kind="text",
        text=expected["text"]["body"],
    )
    result = await adapter_for(graph).send(message)
    (request,) = graph.requests
    assert request.url.path == f"/v26.0/{FIXTURE_PHONE_ID}/messages"
    assert request.url.host == "graph.test"
    body = json.loads(request.content)
    assert without_trace(body) == expected
    assert body["biz_opaque_callback_data"] == str(message.message_id)
    assert isinstance(result, SendResult)
    assert result.provider_message_id == graph.sent_wamids[0]
    assert result.recipient == expected["to"]


async def test_reply_context_and_preview_url(graph: FakeGraph) -> None:
    expected = fixture_json("send_request_reply.json")
    await adapter_for(graph).send(
        text(
            expected["text"]["body"],
            reply_to_provider_message_id=expected["context"]["message_id"],
        )
    )
    body = graph.sends()[0]
    assert body["context"] == expected["context"]
    assert body["text"] == {"preview_url": False, "body": expected["text"]["body"]}
    await adapter_for(graph).send(text("https://loja.exemplo", preview_url=True))
    assert graph.sends()[1]["text"]["preview_url"] is True


async def test_media_by_link_and_by_id(graph: FakeGraph) -> None:
    expected = fixture_json("send_request_image_link.json")
    by_link = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone="+" + expected["to"]),
        kind="media",
        media=OutboundMedia(
            kind="image", url=expected["image"]["link"], caption=expected["image"]["caption"]
        ),
    )
    by_id = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone=CUSTOMER),
        kind="media",
        media=OutboundMedia(
            kind="document", provider_media_id="123456", filename="nf.pdf", caption="NF"
        ),
    )
    voice = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone=CUSTOMER),
        kind="media",
        media=OutboundMedia(kind="audio", provider_media_id="777", caption="ignored"),
    )
    adapter = adapter_for(graph)
    for message in (by_link, by_id, voice):
        await adapter.send(message)
    first, second, third = graph.sends()
    assert without_trace(first) == expected
    assert second["type"] == "document"
    assert second["document"] == {"id": "123456", "caption": "NF", "filename": "nf.pdf"}
    assert third["audio"] == {"id": "777"}  # audio takes no caption


async def test_inline_bytes_are_uploaded_first(graph: FakeGraph) -> None:
    data = b"%PDF-1.4 test"
    message = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone=CUSTOMER),
        kind="media",
        media=OutboundMedia(
            kind="document",
            data_base64=base64.b64encode(data).decode(),
            mime_type="application/pdf",
            filename="boleto.pdf",
        ),
    )
    await adapter_for(graph).send(message)
    upload, send = graph.requests
    assert upload.url.path == f"/v26.0/{FIXTURE_PHONE_ID}/media"
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert data in upload.content and b'name="messaging_product"' in upload.content
    assert b"application/pdf" in upload.content
    body = json.loads(send.content)
    assert body["document"] == {"id": "990011223344", "filename": "boleto.pdf"}


async def test_template_with_components(graph: FakeGraph) -> None:
    expected = fixture_json("send_request_template.json")
    template = TemplateRef(
        name="pedido_confirmado",
        language="pt_BR",
        components=[
            TemplateComponent(type="header", parameters=[TemplateParameter(value="#4512")]),
            TemplateComponent(
                type="body",
                parameters=[TemplateParameter(value="João"), TemplateParameter(value="#4512")],
            ),
            TemplateComponent(
                type="button",
                sub_type="quick_reply",
                index=0,
                parameters=[TemplateParameter(type="payload", value="FALAR_ATENDENTE:4512")],
            ),
        ],
    )
    message = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(phone="+" + expected["to"]),
        kind="template",
        template=template,
    )
    await adapter_for(graph).send(message)
    assert without_trace(graph.sends()[0]) == expected


async def test_template_media_and_named_parameters(graph: FakeGraph) -> None:
    template = TemplateRef(
        name="promo_semana",
        components=[
            TemplateComponent(
                type="header",
                parameters=[TemplateParameter(type="image", value="https://cdn.test/a.jpg")],
            ),
            TemplateComponent(
                type="body",
                parameters=[
                    TemplateParameter(value={"text": "Ana", "parameter_name": "nome"}),
                    TemplateParameter(
                        type="currency",
                        value={"fallback_value": "R$ 10", "code": "BRL", "amount_1000": 10000},
                    ),
                ],
            ),
        ],
    )
    await adapter_for(graph).send(
        OutboundMessage(
            message_id=uuid.uuid4(),
            to=Recipient(phone=CUSTOMER),
            kind="template",
            template=template,
        )
    )
    header, body = graph.sends()[0]["template"]["components"]
    assert header["parameters"] == [{"type": "image", "image": {"link": "https://cdn.test/a.jpg"}}]
    assert body["parameters"][0] == {"type": "text", "text": "Ana", "parameter_name": "nome"}
    assert body["parameters"][1]["currency"]["code"] == "BRL"


async def test_username_recipient_goes_in_recipient(graph: FakeGraph) -> None:
    message = OutboundMessage(
        message_id=uuid.uuid4(),
        to=Recipient(provider_user_id="BR.7319046628150274"),
        kind="text",
        text="Oi, Bia!",
    )
    await adapter_for(graph).send(message)
    body = graph.sends()[0]
    assert body["recipient"] == "BR.7319046628150274" and "to" not in body


RETRYABLE = [
    ("error_4.json", 400, "4", 60.0),
    ("error_80007.json", 400, "80007", 60.0),
    ("error_130429.json", 400, "130429", 2.0),
    ("error_131056.json", 400, "131056", 6.0),
    ("error_131000.json", 500, "131000", 5.0),
    ("error_500.json", 500, "2", 5.0),
]
PERMANENT = [
    ("error_131026.json", 400, "131026", "undeliverable"),
    ("error_131047.json", 400, "131047", "24 hours"),
    ("error_131051.json", 400, "131051", "unsupported message type"),
    ("error_100.json", 400, "100", "not a valid WhatsApp phone number"),
    ("error_132000.json", 400, "132000", "template error"),
    ("error_132001.json", 404, "132001", "does not exist in pt_PT"),
    ("error_132012.json", 400, "132012", "expected IMAGE"),
]


@pytest.mark.parametrize(("name", "status", "code", "wait"), RETRYABLE)
async def test_retryable_graph_errors(
    graph: FakeGraph, name: str, status: int, code: str, wait: float
) -> None:
    graph.fail_next(status, fixture_bytes(name))
    with pytest.raises(RetryableSendError) as caught:
        await adapter_for(graph).send(text())
    assert caught.value.code == code
    assert caught.value.retry_after == wait
    assert caught.value.details["fbtrace_id"]


async def test_code_decides_not_the_http_status(graph: FakeGraph) -> None:
    graph.fail_next(429, fixture_bytes("error_131047.json"))  # permanent even on a 429
    with pytest.raises(PermanentSendError):
        await adapter_for(graph).send(text())
    graph.fail_next(200, fixture_bytes("error_130429.json"))  # an error body is an error
    with pytest.raises(RetryableSendError):
        await adapter_for(graph).send(text())


async def test_retry_after_comes_from_headers_when_given(graph: FakeGraph) -> None:
    graph.fail_next(429, fixture_bytes("error_130429.json"), {"Retry-After": "17"})
    with pytest.raises(RetryableSendError) as caught:
        await adapter_for(graph).send(text())
    assert caught.value.retry_after == 17.0
    usage = json.dumps(
        {
            "102938475610293": [
                {"type": "whatsapp_business_management", "estimated_time_to_regain_access": 3}
            ]
        }
    )
    graph.fail_next(400, fixture_bytes("error_80007.json"), {"X-Business-Use-Case-Usage": usage})
    with pytest.raises(RetryableSendError) as caught:
        await adapter_for(graph).send(text())
    assert caught.value.retry_after == 180.0


@pytest.mark.parametrize(("name", "status", "code", "reason"), PERMANENT)
async def test_permanent_graph_errors(
    graph: FakeGraph, name: str, status: int, code: str, reason: str
) -> None:
    graph.fail_next(status, fixture_bytes(name))
    with pytest.raises(PermanentSendError) as caught:
        await adapter_for(graph).send(text())
    assert caught.value.code == code
    assert reason in caught.value.message
    assert caught.value.channel_unhealthy is False


async def test_expired_token_marks_the_channel_unhealthy(graph: FakeGraph) -> None:
    graph.fail_next(401, fixture_bytes("error_190.json"))
    with pytest.raises(PermanentSendError) as caught:
        await adapter_for(graph).send(text())
    assert caught.value.code == "190"
    assert caught.value.channel_unhealthy is True
    assert "access_token" in caught.value.message


async def test_non_graph_failures() -> None:
    def answer(status: int, content: bytes = b"<html>") -> Any:
        return lambda request: httpx.Response(status, content=content)

    def raising(exc: Exception) -> Any:
        def handler(request: httpx.Request) -> httpx.Response:
            raise exc

        return handler

    cases: list[tuple[Any, type[Exception], str]] = [
        (answer(502), RetryableSendError, "http_502"),
        (answer(429), RetryableSendError, "http_429"),
        (answer(403), PermanentSendError, "http_403"),
        (raising(httpx.ReadTimeout("slow")), RetryableSendError, "timeout"),
        (raising(httpx.ConnectError("down")), RetryableSendError, "network"),
        (lambda r: httpx.Response(200, json={"messages": []}), RetryableSendError, "bad_response"),
    ]
    for handler, error, code in cases:
        info = ChannelInfo(id=uuid.uuid4(), tenant_id=uuid.uuid4(), type="meta_cloud", name="W")
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        adapter = MetaCloudAdapter(info, MetaCloudConfig.model_validate(config()), http=http)
        with pytest.raises(error) as caught:
            await adapter.send(text())
        assert caught.value.code == code


async def test_fetch_media_downloads_with_the_token(graph: FakeGraph) -> None:
    data = b"\xff\xd8\xff\xe0 jpeg bytes"
    graph.media["3035608771711194"] = (data, "image/jpeg")
    fetched = await adapter_for(graph).fetch_media(
        Media(provider_media_id="3035608771711194", mime_type="image/jpeg", filename="p.jpg")
    )
    assert fetched == FetchedMedia(data=data, mime_type="image/jpeg", filename="p.jpg")
    info, download = graph.requests
    assert info.url.path == "/v26.0/3035608771711194"
    assert download.url.host == "lookaside.test"
    assert download.headers["authorization"].startswith("Bearer ")


async def test_fetch_media_failures(graph: FakeGraph) -> None:
    adapter = adapter_for(graph)
    with pytest.raises(PermanentSendError):
        await adapter.fetch_media(Media(url="https://x.test/a.jpg"))  # no Meta media id
    with pytest.raises(PermanentSendError):  # Graph answers error 100 for an unknown id
        await adapter.fetch_media(Media(provider_media_id="404404"))


async def test_media_get_fixture_shape_is_what_fetch_reads() -> None:
    info = fixture_json("media_get.json")
    assert {"url", "mime_type", "sha256", "file_size", "id"} <= info.keys()


async def test_sends_take_a_token_from_the_shared_bucket(graph: FakeGraph) -> None:
    now = [1000.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    adapter = adapter_for(graph, limiter=limiter, throughput_per_second=2)
    await adapter.send(text("1"))
    await adapter.send(text("2"))  # the burst of 2 per second is used up
    with pytest.raises(RetryableSendError) as caught:
        await take_send_token(limiter, FIXTURE_PHONE_ID, 2, max_wait=0.1)
    assert caught.value.code == "throughput_limited"
    # the next token is 0.5 s away: a slot fits within max_wait=0.1 s after 0.4 s
    assert caught.value.retry_after == pytest.approx(0.4)
    now[0] += 0.5  # half a second later one token is back
    await adapter.send(text("3"))
    assert len(graph.sends()) == 3
    other = await limiter.acquire(bucket_key("another"), rate=2, burst=2)
    assert other.allowed  # buckets are per phone number


async def test_a_short_wait_is_slept_not_refused() -> None:
    limiter = MemoryRateLimiter()
    for _ in range(1000):  # empty the bucket of a 1000/s number
        assert (await limiter.acquire(bucket_key("fast"), rate=1000, burst=1000)).allowed
    await take_send_token(limiter, "fast", 1000)  # ~1 ms until the next token: waited


async def test_limit_is_shared_through_redis(require_redis: str) -> None:
    from redis.asyncio import Redis

    from guiche.ratelimit import RedisRateLimiter

    redis = Redis.from_url(require_redis)
    try:
        now = [5000.0]
        prefix = f"test:{uuid.uuid4().hex}:"
        worker_a = RedisRateLimiter(redis, prefix=prefix, clock=lambda: now[0])
        worker_b = RedisRateLimiter(redis, prefix=prefix, clock=lambda: now[0])
        await take_send_token(worker_a, FIXTURE_PHONE_ID, 1)
        with pytest.raises(RetryableSendError):  # the other worker sees the same bucket
            await take_send_token(worker_b, FIXTURE_PHONE_ID, 1, max_wait=0.1)
    finally:
        await redis.aclose()


async def test_setup_checks_the_number_with_the_token(graph: FakeGraph) -> None:
    await adapter_for(graph).setup()
    assert graph.requests[0].url.path == f"/v26.0/{FIXTURE_PHONE_ID}"
    with pytest.raises(PermanentSendError) as caught:
        await adapter_for(graph, access_token="expired").setup()
    assert caught.value.channel_unhealthy is True


async def test_mark_read_posts_status_read_for_the_message() -> None:
    graph = FakeGraph()
    adapter = adapter_for(graph)
    assert CAP_READ_RECEIPTS in type(adapter).capabilities

    await adapter.mark_read(
        ReadReceipt(provider_message_id="wamid.IN1", sender=Recipient(phone=CUSTOMER))
    )

    [request] = graph.requests
    assert request.url.path.endswith(f"/{FIXTURE_PHONE_ID}/messages")
    assert json.loads(request.content) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN1",
    }


async def test_mark_read_maps_graph_errors_to_channel_errors() -> None:
    graph = FakeGraph()
    graph.fail_next(400, fixture_bytes("error_100.json"))
    with pytest.raises(ChannelError):
        await adapter_for(graph).mark_read(
            ReadReceipt(provider_message_id="wamid.IN1", sender=Recipient(phone=CUSTOMER))
        )
