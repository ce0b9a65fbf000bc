"""The channel contract suite itself: a correct toy adapter passes it, and each
deliberately broken variant fails it with the broken rule named."""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import orjson
import pytest
from pydantic import BaseModel

from guiche.channels import (
    ChannelAdapter,
    ChannelInfo,
    DeliveryStatus,
    InboundMessage,
    MessageType,
    OutboundMessage,
    PermanentSendError,
    Recipient,
    RetryableSendError,
    Sender,
    SendResult,
    StatusUpdate,
    WebhookAuthError,
    WebhookBatch,
    WebhookRequest,
)
from guiche.contract import (
    ChannelContract,
    ContractViolation,
    check_edits,
    check_failure_mapping,
    check_ids_across_chats,
    check_redelivery,
    check_status_order,
    check_timestamps,
    check_valid_webhooks,
    check_webhook_auth,
)

SECRET = "toy-secret-0123456789"
HEADER = "X-Toy-Secret"
ANSWERS = {"rate_limited": 429, "server_error": 503, "unauthorized": 401, "forbidden": 403}


class ToyConfig(BaseModel):
    secret: str = SECRET


class ToyAdapter(ChannelAdapter):
    """A small provider: per-chat message numbers, edits, statuses, a shared secret."""

    config_model: ClassVar[type[BaseModel]] = ToyConfig

    def __init__(self, channel: ChannelInfo, config: BaseModel, *, http: Any = None) -> None:
        super().__init__(channel, config, http=http)
        self.next_answer: list[int] = []

    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        self.authenticate(request.header(HEADER))
        data = orjson.loads(request.body)
        messages, ignored = [], 0
        for item in data.get("messages", []):
            if item.get("edit_of") is not None:
                ignored += 1
                continue
            messages.append(self.message(item))
        statuses = [
            StatusUpdate(
                provider_message_id=item["id"],
                status=DeliveryStatus(item["status"]),
                timestamp=self.time(item["ts"]),
                raw=item,
            )
            for item in data.get("statuses", [])
        ]
        return WebhookBatch(messages=messages, statuses=statuses, ignored=ignored)

    def authenticate(self, given: str | None) -> None:
        if not given or not hmac.compare_digest(given, SECRET):
            raise WebhookAuthError("wrong secret")

    def message(self, item: dict[str, Any]) -> InboundMessage:
        return InboundMessage(
            provider_message_id=self.message_id(item),
            sender=Sender(phone=item["from"]),
            timestamp=self.time(item["ts"]),
            type=MessageType.TEXT,
            text=item["text"],
            raw=item,
        )

    def message_id(self, item: dict[str, Any]) -> str:
        return f"{item['chat']}:{item['id']}"

    def time(self, seconds: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)

    async def send(self, message: OutboundMessage) -> SendResult:
        if self.next_answer:
            self.fail(self.next_answer.pop(0))
        return SendResult(provider_message_id=f"out:{message.message_id}")

    def fail(self, status: int) -> None:
        if status == 429:
            raise RetryableSendError("slow down", retry_after=7.0, code="429")
        if status >= 500:
            raise RetryableSendError("provider down", code=str(status))
        raise PermanentSendError("refused", code=str(status), channel_unhealthy=True)


# --- the deliberately broken variants ------------------------------------------------------


class DropsRaw(ToyAdapter):
    def message(self, item: dict[str, Any]) -> InboundMessage:
        return super().message(item).model_copy(update={"raw": {}})


class AcceptsPrefix(ToyAdapter):
    def authenticate(self, given: str | None) -> None:
        if not given or not SECRET.startswith(given):
            raise WebhookAuthError("wrong secret")


class AcceptsMissing(ToyAdapter):
    def authenticate(self, given: str | None) -> None:
        if given is not None:
            super().authenticate(given)


class NaiveTimes(ToyAdapter):
    def time(self, seconds: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


class LocalTimes(ToyAdapter):
    def time(self, seconds: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(seconds, dt.timezone(dt.timedelta(hours=-3)))


class PerChatIds(ToyAdapter):
    def message_id(self, item: dict[str, Any]) -> str:
        return str(item["id"])


class GeneratedIds(ToyAdapter):
    def message_id(self, item: dict[str, Any]) -> str:
        return uuid.uuid4().hex


class EditsAsNew(ToyAdapter):
    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        batch = await super().parse_webhook(request)
        data = orjson.loads(request.body)
        edits = [self.message(i) for i in data.get("messages", []) if i.get("edit_of")]
        return batch.model_copy(update={"messages": [*batch.messages, *edits]})


class RateLimitIsPermanent(ToyAdapter):
    def fail(self, status: int) -> None:
        if status == 429:
            raise PermanentSendError("slow down", code="429")
        super().fail(status)


class DropsRetryAfter(ToyAdapter):
    def fail(self, status: int) -> None:
        if status == 429:
            raise RetryableSendError("slow down", code="429")
        super().fail(status)


class AuthIsRetryable(ToyAdapter):
    def fail(self, status: int) -> None:
        if status in (401, 403):
            raise RetryableSendError("refused", code=str(status))
        super().fail(status)


class UntypedErrors(ToyAdapter):
    def fail(self, status: int) -> None:
        raise RuntimeError(f"HTTP {status}")


class StatusesBackwards(ToyAdapter):
    async def parse_webhook(self, request: WebhookRequest) -> WebhookBatch:
        batch = await super().parse_webhook(request)
        flipped = {
            DeliveryStatus.READ: DeliveryStatus.SENT,
            DeliveryStatus.SENT: DeliveryStatus.READ,
        }
        statuses = [
            s.model_copy(update={"status": flipped.get(s.status, s.status)}) for s in batch.statuses
        ]
        return batch.model_copy(update={"statuses": statuses})


# --- fixtures ------------------------------------------------------------------------------


def build(adapter_type: type[ToyAdapter] = ToyAdapter) -> ToyAdapter:
    info = ChannelInfo(id=uuid.uuid4(), tenant_id=uuid.uuid4(), type="toy", name="Toy")
    return adapter_type(info, ToyConfig())


def toy_webhook(body: dict[str, Any], secret: str | None = SECRET) -> WebhookRequest:
    headers = {HEADER: secret} if secret is not None else {}
    return WebhookRequest(
        method="POST", path="/webhooks/toy/x", headers=headers, query={}, body=orjson.dumps(body)
    )


def text_item(chat: str, number: int, **extra: Any) -> dict[str, Any]:
    return {"chat": chat, "id": number, "from": "5511987654321", "text": "oi", "ts": 1764950400}


VALID = [toy_webhook({"messages": [text_item("c1", 1), text_item("c1", 2)]})]
TWO_CHATS = (
    toy_webhook({"messages": [text_item("c1", 7)]}),
    toy_webhook({"messages": [text_item("c2", 7)]}),
)
EDITED = (
    toy_webhook({"messages": [text_item("c1", 3)]}),
    toy_webhook({"messages": [{**text_item("c1", 4), "edit_of": 3}]}),
)
STATUSES = [
    toy_webhook({"statuses": [{"id": "out:1", "status": status, "ts": 1764950400 + i}]})
    for i, status in enumerate(("sent", "delivered", "read"))
]


def failing(adapter: ToyAdapter) -> Callable[[str], float | None]:
    def fail(scenario: str) -> float | None:
        adapter.next_answer.append(ANSWERS[scenario])
        return 7.0 if scenario == "rate_limited" else None

    return fail


OUTBOUND = OutboundMessage(
    message_id=uuid.uuid4(), to=Recipient(phone="+5511987654321"), kind="text", text="Olá"
)


# --- the correct adapter passes the whole suite ------------------------------------------------


class TestToyContract(ChannelContract):
    @pytest.fixture
    def adapter(self) -> ToyAdapter:
        return build()

    @pytest.fixture
    def valid_webhooks(self) -> list[WebhookRequest]:
        return VALID

    @pytest.fixture
    def webhook_secrets(self) -> list[tuple[str, str]]:
        return [("header", HEADER)]

    @pytest.fixture
    def outbound_text(self) -> OutboundMessage:
        return OUTBOUND

    @pytest.fixture
    def provider_fails(self, adapter: ToyAdapter) -> Callable[[str], float | None]:
        return failing(adapter)

    @pytest.fixture
    def same_native_id_in_two_chats(self) -> tuple[WebhookRequest, WebhookRequest]:
        return TWO_CHATS

    @pytest.fixture
    def edited_message(self) -> tuple[WebhookRequest, WebhookRequest]:
        return EDITED

    @pytest.fixture
    def status_progression(self) -> list[WebhookRequest]:
        return STATUSES


# --- each broken variant fails with its rule named ------------------------------------------


def _rule_of(check: Callable[[ToyAdapter], None], adapter_type: type[ToyAdapter]) -> str:
    with pytest.raises(ContractViolation) as caught:
        check(build(adapter_type))
    return caught.value.rule


BROKEN: list[tuple[type[ToyAdapter], Callable[[ToyAdapter], None], str]] = [
    (DropsRaw, lambda a: check_valid_webhooks(a, VALID), "raw"),
    (
        AcceptsPrefix,
        lambda a: check_webhook_auth(a, VALID[0], [("header", HEADER)]),
        "webhook-auth",
    ),
    (
        AcceptsMissing,
        lambda a: check_webhook_auth(a, VALID[0], [("header", HEADER)]),
        "webhook-auth",
    ),
    (NaiveTimes, lambda a: check_timestamps(a, VALID), "timestamps"),
    (LocalTimes, lambda a: check_timestamps(a, VALID), "timestamps"),
    (PerChatIds, lambda a: check_ids_across_chats(a, TWO_CHATS), "chat-ids"),
    (GeneratedIds, lambda a: check_redelivery(a, VALID), "redelivery"),
    (EditsAsNew, lambda a: check_edits(a, EDITED), "edits"),
    (RateLimitIsPermanent, lambda a: check_failure_mapping(a, OUTBOUND, failing(a)), "rate-limit"),
    (DropsRetryAfter, lambda a: check_failure_mapping(a, OUTBOUND, failing(a)), "rate-limit"),
    (AuthIsRetryable, lambda a: check_failure_mapping(a, OUTBOUND, failing(a)), "auth-errors"),
    (UntypedErrors, lambda a: check_failure_mapping(a, OUTBOUND, failing(a)), "rate-limit"),
    (StatusesBackwards, lambda a: check_status_order(a, STATUSES), "status-order"),
]


@pytest.mark.parametrize(
    ("adapter_type", "check", "rule"), BROKEN, ids=[b[0].__name__ for b in BROKEN]
)
def test_each_broken_adapter_fails_its_rule(
    adapter_type: type[ToyAdapter], check: Callable[[ToyAdapter], None], rule: str
) -> None:
    assert _rule_of(check, adapter_type) == rule


def test_the_message_names_the_rule_and_the_fix() -> None:
    with pytest.raises(ContractViolation) as caught:
        check_webhook_auth(build(AcceptsPrefix), VALID[0], [("header", HEADER)])
    message = str(caught.value)
    assert message.startswith("[webhook-auth] ")
    assert "hmac.compare_digest" in message


def test_the_correct_adapter_passes_every_check() -> None:
    adapter = build()
    check_valid_webhooks(adapter, VALID)
    check_webhook_auth(adapter, VALID[0], [("header", HEADER)])
    check_timestamps(adapter, VALID)
    check_redelivery(adapter, VALID)
    check_ids_across_chats(adapter, TWO_CHATS)
    check_edits(adapter, EDITED)
    check_failure_mapping(adapter, OUTBOUND, failing(adapter))
    check_status_order(adapter, STATUSES)
