"""The channel contract suite: the rules every channel adapter must keep, as pytest tests.

A plugin subclasses `ChannelContract` in its tests and provides fixtures (below); each
broken rule fails with a message that starts with the rule's name in brackets, says what
was seen and what to do. The rules are also plain functions (`check_*`), so the suite's
own tests run them against deliberately broken adapters.

The tests are synchronous and run each adapter call on a private event loop in a worker
thread, so the suite needs no pytest-asyncio configuration: build the adapter in a
plain (sync) fixture with a faked HTTP client (e.g. `httpx.MockTransport`).

Fixtures:
  - `adapter`: a configured adapter whose provider is faked.
  - `valid_webhooks`: `WebhookRequest`s that must parse (correctly authenticated).
  - `webhook_secrets`: where the first valid webhook carries its authentication, as
    `("header", name)` / `("query", name)` pairs (a signature or a shared secret).
  - `outbound_text`: an `OutboundMessage` the faked provider accepts.
  - `provider_fails`: a callable `(scenario) -> announced delay or None` that makes the
    faked provider's next answer to a send be `"rate_limited"` (with the delay it
    announces, if it announces one), `"unauthorized"`, `"forbidden"` or
    `"server_error"`.
  - optional (default None: the rule is skipped, say why in a docstring if you leave it):
    `same_native_id_in_two_chats` (two webhooks whose provider-native message ids are
    equal but come from different chats), `edited_message` (a webhook with a message and
    one with its edit), `status_progression` (webhooks with one sent message's statuses,
    in the order the provider posts them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import pytest

from guiche.channels import (
    CAP_SEND_LOOKUP,
    STATUS_RANK,
    ChannelAdapter,
    OutboundMessage,
    PermanentSendError,
    RetryableSendError,
    SendResult,
    WebhookAuthError,
    WebhookBatch,
    WebhookRequest,
)

T = TypeVar("T")
Scenario = str  # "rate_limited", "unauthorized", "forbidden", "server_error"
ProviderFails = Callable[[Scenario], float | None]


class ContractViolation(AssertionError):
    """A broken rule: `rule` names it, the message says what was seen and what to do."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"[{rule}] {message}")
        self.rule = rule


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one adapter call on its own loop in a worker thread (no loop plugin needed)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _parse(adapter: ChannelAdapter, request: WebhookRequest) -> WebhookBatch:
    return run(adapter.parse_webhook(request))


# --- rules ----------------------------------------------------------------------------


def check_valid_webhooks(adapter: ChannelAdapter, requests: Sequence[WebhookRequest]) -> None:
    """Valid webhooks parse into normalised items that keep the provider's payload."""
    if not requests:
        raise ContractViolation("fixtures", "provide at least one valid webhook")
    for request in requests:
        batch = _parse(adapter, request)
        if not isinstance(batch, WebhookBatch):
            raise ContractViolation("parse", f"parse_webhook returned {type(batch).__name__}")
        for message in batch.messages:
            if not message.raw:
                raise ContractViolation(
                    "raw",
                    f"message {message.provider_message_id!r} dropped the provider's raw "
                    "payload: keep it in `raw` (core stores it for audits and re-parsing)",
                )


def check_webhook_auth(
    adapter: ChannelAdapter, request: WebhookRequest, secrets: Sequence[tuple[str, str]]
) -> None:
    """A webhook whose secret or signature is missing, empty, wrong or a prefix of the
    right one is refused with `WebhookAuthError` (core answers 401, stores nothing)."""
    if not secrets:
        raise ContractViolation(
            "fixtures", "name where webhooks carry their secret or signature (webhook_secrets)"
        )
    for where, name in secrets:
        value = _secret_value(request, where, name)
        if value is None:
            raise ContractViolation(
                "fixtures", f"the first valid webhook has no {where} {name!r} to tamper with"
            )
        variants = {
            "missing": None,
            "empty": "",
            "wrong": value[:-1] + ("0" if value[-1:] != "0" else "1"),
            "truncated to a prefix": value[: max(1, len(value) // 2)],
            "one character short": value[:-1],
        }
        for variant, tampered in variants.items():
            forged = _with_secret(request, where, name, tampered)
            try:
                _parse(adapter, forged)
            except WebhookAuthError:
                continue
            raise ContractViolation(
                "webhook-auth",
                f"a webhook whose {where} {name!r} was {variant} was accepted: refuse a "
                "missing or empty one, and compare the whole value with "
                "hmac.compare_digest (never a prefix or startswith)",
            )


def check_timestamps(adapter: ChannelAdapter, requests: Sequence[WebhookRequest]) -> None:
    """Every time the adapter reports is timezone-aware UTC."""
    for request in requests:
        batch = _parse(adapter, request)
        stamps = [(m.provider_message_id, m.timestamp) for m in batch.messages]
        stamps += [(s.provider_message_id, s.timestamp) for s in batch.statuses]
        for provider_id, stamp in stamps:
            if stamp.tzinfo is None or stamp.utcoffset() != dt.timedelta(0):
                raise ContractViolation(
                    "timestamps",
                    f"{provider_id!r} has timestamp {stamp.isoformat()}: give UTC-aware "
                    "datetimes (dt.datetime.fromtimestamp(ts, dt.UTC))",
                )


def check_redelivery(adapter: ChannelAdapter, requests: Sequence[WebhookRequest]) -> None:
    """A redelivered webhook yields the same provider ids (core's dedup key)."""
    for request in requests:
        first, again = _parse(adapter, request), _parse(adapter, request)
        ids = [m.provider_message_id for m in first.messages]
        if ids != [m.provider_message_id for m in again.messages]:
            raise ContractViolation(
                "redelivery",
                f"the same webhook parsed twice gave different ids ({ids[:3]}...): derive "
                "provider_message_id from the provider's id, never generate it",
            )


def check_ids_across_chats(
    adapter: ChannelAdapter, pair: tuple[WebhookRequest, WebhookRequest]
) -> None:
    """Provider ids unique only per chat are qualified by the chat (else dedup merges
    two customers' messages)."""
    ids = [m.provider_message_id for request in pair for m in _parse(adapter, request).messages]
    if len(ids) != len(set(ids)):
        raise ContractViolation(
            "chat-ids",
            f"two messages from different chats share provider id {ids[0]!r}: when the "
            "provider numbers messages per chat, prefix the chat (f'{chat_id}:{message_id}')",
        )


def check_edits(adapter: ChannelAdapter, pair: tuple[WebhookRequest, WebhookRequest]) -> None:
    """An edit is not a new message: ignore it, or carry the original's provider id."""
    original = {m.provider_message_id for m in _parse(adapter, pair[0]).messages}
    edited = [m.provider_message_id for m in _parse(adapter, pair[1]).messages]
    new = [provider_id for provider_id in edited if provider_id not in original]
    if new:
        raise ContractViolation(
            "edits",
            f"an edit was parsed as a new message {new[0]!r}: ignore edits (count them in "
            "WebhookBatch.ignored) or give them the original's provider id",
        )


def check_status_order(adapter: ChannelAdapter, requests: Sequence[WebhookRequest]) -> None:
    """One message's statuses, in the order the provider posts them, never move back."""
    statuses = [s for request in requests for s in _parse(adapter, request).statuses]
    if not statuses:
        raise ContractViolation("fixtures", "status_progression parsed into no statuses")
    ordered = sorted(statuses, key=lambda s: s.timestamp)
    ranks = [STATUS_RANK[s.status] for s in ordered]
    if ranks != sorted(ranks):
        seen = " → ".join(s.status.value for s in ordered)
        raise ContractViolation(
            "status-order",
            f"statuses move backwards in time order ({seen}): map the provider's states to "
            "the right DeliveryStatus and give each its own provider timestamp",
        )


def check_send(adapter: ChannelAdapter, message: OutboundMessage) -> None:
    """An accepted send returns the provider's id; a refusal raises a typed error."""
    try:
        result = run(adapter.send(message))
    except (RetryableSendError, PermanentSendError):
        return
    except Exception as exc:
        raise ContractViolation(
            "send-errors",
            f"send raised {type(exc).__name__}: map every failure to RetryableSendError "
            "or PermanentSendError",
        ) from exc
    if not isinstance(result, SendResult) or not result.provider_message_id:
        raise ContractViolation("send", "send must return a SendResult with provider_message_id")


def check_failure_mapping(
    adapter: ChannelAdapter, message: OutboundMessage, provider_fails: ProviderFails
) -> None:
    """Throttling and outages are retryable (with the provider's delay); rejected
    credentials or permissions are permanent (retrying cannot help)."""
    expected: dict[str, type[Exception]] = {
        "rate_limited": RetryableSendError,
        "server_error": RetryableSendError,
        "unauthorized": PermanentSendError,
        "forbidden": PermanentSendError,
    }
    for scenario, error_type in expected.items():
        announced = provider_fails(scenario)
        try:
            run(adapter.send(message))
        except error_type as exc:
            if scenario == "rate_limited" and announced is not None:
                retry_after = getattr(exc, "retry_after", None)
                if retry_after is None or abs(retry_after - announced) > 1:
                    raise ContractViolation(
                        "rate-limit",
                        f"the provider asked for {announced:g}s, the error carries "
                        f"retry_after={retry_after}: pass the provider's delay on",
                    ) from exc
            continue
        except Exception as exc:
            rule = "rate-limit" if scenario == "rate_limited" else "auth-errors"
            if scenario == "server_error":
                rule = "server-errors"
            raise ContractViolation(
                rule,
                f"a {scenario.replace('_', ' ')} answer raised {type(exc).__name__}, "
                f"expected {error_type.__name__}",
            ) from exc
        raise ContractViolation(
            "send-errors", f"a {scenario.replace('_', ' ')} answer was reported as sent"
        )


def check_capabilities(adapter: ChannelAdapter) -> None:
    adapter_type = type(adapter)
    if not isinstance(adapter_type.capabilities, frozenset):
        raise ContractViolation("capabilities", "capabilities must be a frozenset")
    if (
        CAP_SEND_LOOKUP in adapter_type.capabilities
        and adapter_type.lookup_sent is ChannelAdapter.lookup_sent
    ):
        raise ContractViolation(
            "capabilities", "CAP_SEND_LOOKUP is declared but lookup_sent is not implemented"
        )


# --- the pytest face --------------------------------------------------------------------


class ChannelContract:
    """Subclass in a plugin's tests and provide the fixtures this module describes."""

    def test_valid_webhooks_normalise(
        self, adapter: ChannelAdapter, valid_webhooks: list[WebhookRequest]
    ) -> None:
        check_valid_webhooks(adapter, valid_webhooks)

    def test_tampered_webhooks_are_refused(
        self,
        adapter: ChannelAdapter,
        valid_webhooks: list[WebhookRequest],
        webhook_secrets: list[tuple[str, str]],
    ) -> None:
        check_webhook_auth(adapter, valid_webhooks[0], webhook_secrets)

    def test_timestamps_are_utc(
        self, adapter: ChannelAdapter, valid_webhooks: list[WebhookRequest]
    ) -> None:
        check_timestamps(adapter, valid_webhooks)

    def test_redelivery_gives_the_same_ids(
        self, adapter: ChannelAdapter, valid_webhooks: list[WebhookRequest]
    ) -> None:
        check_redelivery(adapter, valid_webhooks)

    def test_ids_are_unique_across_chats(
        self, adapter: ChannelAdapter, request: pytest.FixtureRequest
    ) -> None:
        pair = _optional(request, "same_native_id_in_two_chats", "ids are global at this provider")
        check_ids_across_chats(adapter, pair)

    def test_edits_are_not_new_messages(
        self, adapter: ChannelAdapter, request: pytest.FixtureRequest
    ) -> None:
        pair = _optional(request, "edited_message", "the provider does not post edits")
        check_edits(adapter, pair)

    def test_statuses_never_move_back(
        self, adapter: ChannelAdapter, request: pytest.FixtureRequest
    ) -> None:
        requests = _optional(request, "status_progression", "the provider posts no statuses")
        check_status_order(adapter, requests)

    def test_send_returns_result_or_typed_error(
        self, adapter: ChannelAdapter, outbound_text: OutboundMessage
    ) -> None:
        check_send(adapter, outbound_text)

    def test_failures_map_to_retryable_or_permanent(
        self,
        adapter: ChannelAdapter,
        outbound_text: OutboundMessage,
        provider_fails: ProviderFails,
    ) -> None:
        check_failure_mapping(adapter, outbound_text, provider_fails)

    def test_declares_config_and_capabilities(self, adapter: ChannelAdapter) -> None:
        check_capabilities(adapter)


def _optional(request: pytest.FixtureRequest, name: str, reason: str) -> Any:
    """An optional fixture's value; the test is skipped (saying so) when it is absent or
    None. Looked up by name so a module-level fixture counts as much as a class one."""
    try:
        value = request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        value = None
    if value is None:
        pytest.skip(f"no {name} fixture: {reason}")
    return value


def _secret_value(request: WebhookRequest, where: str, name: str) -> str | None:
    if where == "header":
        return request.header(name)
    if where == "query":
        return request.query.get(name)
    raise ContractViolation("fixtures", f"webhook_secrets: unknown location {where!r}")


def _with_secret(
    request: WebhookRequest, where: str, name: str, value: str | None
) -> WebhookRequest:
    if where == "header":
        headers = {k: v for k, v in request.headers.items() if k.lower() != name.lower()}
        if value is not None:
            headers[name] = value
        return request.model_copy(update={"headers": headers})
    query = {k: v for k, v in request.query.items() if k != name}
    if value is not None:
        query[name] = value
    return request.model_copy(update={"query": query})


__all__ = [
    "ChannelContract",
    "ContractViolation",
    "ProviderFails",
    "check_capabilities",
    "check_edits",
    "check_failure_mapping",
    "check_ids_across_chats",
    "check_redelivery",
    "check_send",
    "check_status_order",
    "check_timestamps",
    "check_valid_webhooks",
    "check_webhook_auth",
    "run",
]
