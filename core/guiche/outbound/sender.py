"""`core.send_message(message_id)`: send one outbox message, safely under redelivery.

Delivery is at-least-once (a redelivered task, a sweeper re-kick, two workers), so the
task first *claims* the outbox row (see `guiche.outbound.outbox`): only the claimant
calls the adapter. A row already settled or leased elsewhere is skipped.

Outcomes: success → `sent` + provider id + a `message_keys` row (so status webhooks
find it; statuses or an echo that beat this commit are folded in, see
`guiche.inbound.early_statuses`); `RetryableSendError`, a timeout or an unexpected
adapter error → retry after a full-jitter backoff (the provider's `retry_after` when
longer) until `send_max_attempts`, then `failed` with `retries_exhausted`;
`PermanentSendError` → `failed` with `{code, message, details}`, and
`channel_unhealthy` also marks the channel.

Crashes: the claim is the durable record that a provider call is about to start. A
claim that finds an earlier holder's attempt neither settled nor released (`in_doubt`:
killed mid-call, or its settle never reached the database) does not send blindly: it
asks the provider (`CAP_SEND_LOOKUP`), re-sends where the provider deduplicates on our
message id (`CAP_IDEMPOTENT_SEND`), and otherwise marks the message `unknown` for a
human. Writes after the provider call (the settle) are retried while the database is
away, for as long as the lease lasts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson
from pydantic import ValidationError

from guiche.channel_host.runtime import ChannelRow, LoadedChannel, load_channel_adapter
from guiche.channels import (
    CAP_IDEMPOTENT_SEND,
    CAP_SEND_LOOKUP,
    DeliveryStatus,
    OutboundMessage,
    PermanentSendError,
    RetryableSendError,
    SendResult,
)
from guiche.database.engine import retry_disconnects
from guiche.foundation.jsonio import dumps_text
from guiche.inbound.early_statuses import lock_name, record_sent_key
from guiche.media.files import MediaUnavailable, inline_data
from guiche.outbound import outbox
from guiche.outbound.groups import groups_for
from guiche.outbound.outbox import Claim
from guiche.outbound.retry import backoff_delay
from guiche.outbound.service import kick_send
from guiche.provider_http.call_log import provider_call
from guiche.realtime import events as ev
from guiche.realtime.events import BusEvent, PendingEvent, record_events
from guiche.runtime.event_hooks import emit_hooks

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.outbound")

Outcome = Literal["sent", "failed", "unknown", "retry", "skipped"]

T = TypeVar("T")

LEASE_MARGIN_SECONDS = 30.0
"""A lease outlives the send timeout by this much, so a live sender never loses its claim."""

# The slow path's settle: the status and the outbox row's removal in one statement.
# `unknown` too: a holder whose settle outlived its lease has the provider's answer,
# which is better than the next holder's "unknown".
_MARK_SENT = f"""
WITH settled AS ({outbox.DELETE})
UPDATE messages SET status = $3, provider_message_id = $4, error = NULL, updated_at = now()
WHERE id = $1 AND created_at = $2 AND status IN ('pending', 'unknown')
RETURNING id
"""

# `failed`, or `unknown` (the provider may have the message; a human decides).
_MARK_FAILED = f"""
WITH settled AS ({outbox.DELETE})
UPDATE messages SET status = $4, error = $3::jsonb, updated_at = now()
WHERE id = $1 AND created_at = $2 AND status = 'pending'
RETURNING id
"""

# Only a change is recorded and announced: a queue of sends failing for one reason
# makes one channel.state event, not one per message.
_UNHEALTHY = """
UPDATE channels SET state = 'unhealthy', state_detail = $3, updated_at = now()
WHERE id = $1 AND tenant = $2 AND (state, state_detail) IS DISTINCT FROM ('unhealthy', $3::text)
RETURNING id
"""


class _Failure(Exception):
    """A reason to fail the message without calling (or after calling) the adapter."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message, "details": details or {}}


async def send_message(
    message_id: str | list[str], *, services: Services
) -> Outcome | list[Outcome]:
    """The `core.send_message` task. Returns what happened (for logs and tests).

    One task may carry several message ids (sends kicked together, the sweeper's
    re-kicks): each is sent as if alone, concurrently, and their claims and settles
    share statements (`guiche.outbound.groups`); one failing does not stop the others.
    A process runs at most `groups.MAX_IN_FLIGHT` sends at once, however they came.
    """
    in_flight = groups_for(services).in_flight

    async def one(message_id: str) -> Outcome:
        async with in_flight:
            return await _send_one(message_id, services)

    if not isinstance(message_id, list):
        return await one(message_id)
    outcomes = await asyncio.gather(*(one(each) for each in message_id), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome  # the others are settled; this one is the sweeper's again
    return [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]


async def _send_one(message_id: str, services: Services) -> Outcome:
    """One message: claim, call the provider, settle."""
    settings = services.settings
    try:
        target = uuid.UUID(str(message_id))
    except ValueError:
        log.warning("send_message: not a message id", extra={"message_id": message_id})
        return "skipped"
    lease = settings.send_timeout_seconds + LEASE_MARGIN_SECONDS
    claimed_row = await groups_for(services).claim(target, lease)
    if claimed_row is None:  # settled, leased elsewhere or not due
        return "skipped"
    row = claimed_row.row
    claimed = {
        "tenant": row["claim_tenant"],
        "message_created_at": row["claim_created_at"],
        "attempts": row["attempts"],
        "in_doubt": row["in_doubt"],
    }
    claim = Claim.won(claimed, target, claimed_row.token, lease)
    message = row if row["id"] is not None else None
    if message is None or message["status"] != "pending" or message["direction"] != "out":
        await outbox.release(claim.message_id)
        return "skipped"
    try:
        loaded = await load_channel_adapter(services, message["channel"])
        if loaded is None or loaded.row.tenant_id != claim.tenant_id:
            raise _Failure("channel_unavailable", "the channel is disabled or its plugin is gone")
        outbound = await _outbound(services, claim, message)
    except _Failure as failure:
        return await _fail(services, claim, message, failure.error, unknown=claim.in_doubt)
    except Exception as exc:  # nothing of this attempt reached the provider: retry it
        log.exception("preparing a send failed", extra={"message_id": str(target)})
        error = {"code": "prepare_error", "message": f"{type(exc).__name__}: {exc}"}
        return await _retry(services, claim, message, error, None, in_doubt=claim.in_doubt)
    capabilities = _capabilities(loaded)
    in_doubt = claim.in_doubt
    if in_doubt:
        if CAP_SEND_LOOKUP in capabilities:
            found = await _lookup(services, claim, message, loaded, outbound)
            if found is not None:
                return found
            in_doubt = False  # the provider has no such send: sending now is the first
        elif CAP_IDEMPOTENT_SEND not in capabilities:
            return await _fail(services, claim, message, _unknown(claim), unknown=True)
    if claim.attempts > settings.send_max_attempts and not in_doubt:
        # earlier holders died before the call, or the provider says they never sent
        return await _fail(
            services, claim, message, _exhausted(claim.attempts, {"code": "worker_lost"})
        )
    # An answer we cannot read may hide an accepted send: keep the doubt when we can ask.
    resolvable = bool(capabilities & {CAP_SEND_LOOKUP, CAP_IDEMPOTENT_SEND})
    try:
        async with asyncio.timeout(settings.send_timeout_seconds):
            with provider_call(loaded.row.tenant_id, loaded.row.id, "send"):
                result = await loaded.adapter.send(outbound)
    except PermanentSendError as exc:
        error = {"code": exc.code or "send_failed", "message": exc.message, "details": exc.details}
        reason = exc.message if exc.channel_unhealthy else None
        return await _fail(services, claim, message, error, unhealthy=reason)
    except RetryableSendError as exc:
        error = {"code": exc.code or "retryable", "message": exc.message, "details": exc.details}
        return await _retry(services, claim, message, error, exc.retry_after, in_doubt=in_doubt)
    except TimeoutError:
        error = {"code": "timeout", "message": "the provider did not answer in time"}
        return await _retry(services, claim, message, error, None, in_doubt=resolvable)
    except Exception as exc:  # an adapter bug must not lose the message: retry, then fail
        log.exception("adapter.send raised an untyped error", extra={"message_id": str(target)})
        error = {"code": "adapter_error", "message": f"{type(exc).__name__}: {exc}"}
        return await _retry(services, claim, message, error, None, in_doubt=resolvable)
    if result.status is DeliveryStatus.FAILED:
        return await _fail(
            services, claim, message, {"code": "provider_failed", "message": "rejected"}
        )
    return await _sent(services, claim, message, result, loaded.row)


def _capabilities(loaded: LoadedChannel) -> frozenset[str]:
    """What the channel type declares, on its spec or its adapter class."""
    return frozenset(loaded.spec.capabilities) | frozenset(type(loaded.adapter).capabilities)


async def _lookup(
    services: Services,
    claim: Claim,
    message: dict[str, Any],
    loaded: LoadedChannel,
    outbound: OutboundMessage,
) -> Outcome | None:
    """Ask the provider about an earlier holder's send; None when it certainly has none."""
    try:
        async with asyncio.timeout(services.settings.send_timeout_seconds):
            with provider_call(loaded.row.tenant_id, loaded.row.id, "lookup_sent"):
                found = await loaded.adapter.lookup_sent(outbound)
    except RetryableSendError as exc:
        error = {"code": exc.code or "lookup_failed", "message": exc.message}
        return await _retry(services, claim, message, error, exc.retry_after, in_doubt=True)
    except Exception as exc:  # cannot tell: keep the doubt, ask again later
        log.warning(
            "lookup_sent failed", extra={"message_id": str(claim.message_id), "error": repr(exc)}
        )
        error = {"code": "lookup_failed", "message": f"{type(exc).__name__}: {exc}"}
        return await _retry(services, claim, message, error, None, in_doubt=True)
    if found is None:
        return None
    log.info(
        "crashed send reconciled: the provider had it",
        extra={"message_id": str(claim.message_id), "attempts": claim.attempts},
    )
    return await _sent(services, claim, message, found, loaded.row)


async def _outbound(services: Services, claim: Claim, message: dict[str, Any]) -> OutboundMessage:
    """The stored normalised message, with stored media attached inline."""
    payload = message["payload"]
    if isinstance(payload, str):
        payload = orjson.loads(payload)
    normalised = dict(payload.get("normalised") or {})
    media_id = payload.get("media_id")
    if media_id and normalised.get("media") is not None:
        try:
            data = await inline_data(services, claim.tenant_id, uuid.UUID(media_id))
        except MediaUnavailable as exc:
            raise _Failure("media_unavailable", str(exc)) from None
        normalised["media"] = {**normalised["media"], "data_base64": data}
    try:
        return OutboundMessage.model_validate(normalised)
    except ValidationError as exc:
        raise _Failure(
            "invalid_message", "the stored message cannot be sent", {"errors": str(exc)}
        ) from None


def _unknown(claim: Claim) -> dict[str, Any]:
    return {
        "code": "send_outcome_unknown",
        "message": (
            "the worker sending this message stopped after calling the provider, which"
            " cannot be asked whether it accepted it; it is not sent again automatically:"
            " check with the customer before resending"
        ),
        "details": {"attempts": claim.attempts - 1},
    }


def _exhausted(attempts: int, last_error: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": "retries_exhausted",
        "message": f"gave up after {attempts} attempts",
        "details": {"attempts": attempts, "last_error": last_error},
    }


def _visibility(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "tenant_id": message["tenant"],
        "conversation_id": message["conversation"],
        "department_id": message["department"],
        "assignee_id": message["assignee"],
    }


def _status_event(
    message: dict[str, Any],
    status: str,
    attempts: int,
    *,
    error: dict[str, Any] | None = None,
    provider_message_id: str | None = None,
) -> PendingEvent:
    return PendingEvent(
        type=ev.MESSAGE_STATUS,
        data={
            "id": message["id"],
            "conversation_id": message["conversation"],
            "status": status,
            "error": error,
            "provider_message_id": provider_message_id,
            "attempts": attempts,
        },
        **_visibility(message),
    )


async def _sent(
    services: Services,
    claim: Claim,
    message: dict[str, Any],
    result: SendResult,
    channel: ChannelRow,
) -> Outcome:
    """Settle a send the provider accepted: one statement, unless the provider raced us.

    Parked statuses or an echo holding the key (see `guiche.inbound.early_statuses`)
    send it to `_sent_raced`, the full path in a transaction of its own; so does
    `skipped`, in case a holder after us marked the message `unknown` (we have the
    answer). Retried while the database is away (see `_settling`): the provider has
    the message, and losing this write would turn it into a doubt.
    """
    status = result.status
    if status in (DeliveryStatus.PENDING, DeliveryStatus.UNKNOWN):
        status = DeliveryStatus.SENT
    provider_id = result.provider_message_id
    event = _status_event(message, status.value, claim.attempts, provider_message_id=provider_id)

    async def settle() -> Any:
        return await groups_for(services).settle_sent(
            claim.message_id,
            claim.message_created_at,
            status.value,
            provider_id,
            channel.id,
            event.tenant_id,  # the message's tenant, the channel's too (checked on load)
            lock_name(channel.id, provider_id),
            event.conversation_id,
            event.department_id,
            event.assignee_id,
            dumps_text(event.data),  # stored as `record_events` would store it
        )

    row = await _settling(claim, "settle sent", settle)
    if row["outcome"] != "sent":
        return await _sent_raced(services, claim, message, event, channel, provider_id)
    recorded = BusEvent.model_construct(**dict(event), seq=row["seq"], created_at=row["created_at"])
    await _publish(services, claim, [recorded])
    # DEBUG: a line per message at INFO repeats the `message.status` event, on the hot path.
    log.debug(
        "message sent", extra={"message_id": str(claim.message_id), "attempts": claim.attempts}
    )
    return "sent"


async def _settling(claim: Claim, what: str, operation: Callable[[], Awaitable[T]]) -> T:
    """Run a write that ends this claim, retried on a database blip while the lease lasts.

    Each settle is one transaction whose repeat is harmless: it committed (the repeat
    finds the message no longer pending) or it did not. Past the lease the error is
    raised and the next holder reconciles (`in_doubt`).
    """
    return await retry_disconnects(
        operation,
        deadline=claim.settle_by,
        what=f"{what} {claim.message_id}",
    )


async def _sent_raced(
    services: Services,
    claim: Claim,
    message: dict[str, Any],
    event: PendingEvent,
    channel: ChannelRow,
    provider_id: str,
) -> Outcome:
    """Settle a send the provider reported on before our commit, in one transaction."""

    async def settle() -> list[BusEvent] | None:
        async with services.db.transaction() as transaction:
            conn = transaction.connection
            moved = await conn.fetchval(
                _MARK_SENT,
                claim.message_id,
                claim.message_created_at,
                event.data["status"],
                provider_id,
            )
            if moved is None:
                return None
            # The key, plus whatever the provider reported before this commit (parked
            # statuses, an echo of this send): see `guiche.inbound.early_statuses`.
            pending = [event, *await record_sent_key(conn, channel, message, provider_id)]
            return await record_events(conn, pending)

    events = await _settling(claim, "settle sent (full path)", settle)
    if events is None:
        return "skipped"
    await _publish(services, claim, events)
    log.info(
        "send settled after provider reports that beat it",
        extra={"message_id": str(claim.message_id), "events": len(events)},
    )
    return "sent"


async def _fail(
    services: Services,
    claim: Claim,
    message: dict[str, Any],
    error: dict[str, Any],
    *,
    unhealthy: str | None = None,
    unknown: bool = False,
) -> Outcome:
    """Settle as `failed`, or as `unknown` when an earlier call may have reached the
    provider (so the message is never sent again by us; a human decides)."""
    status = DeliveryStatus.UNKNOWN if unknown else DeliveryStatus.FAILED

    async def settle() -> tuple[bool, list[BusEvent]]:
        pending: list[PendingEvent] = []
        async with services.db.transaction() as transaction:
            conn = transaction.connection
            moved = await conn.fetchval(
                _MARK_FAILED,
                claim.message_id,
                claim.message_created_at,
                orjson.dumps(error, default=str).decode(),
                status.value,
            )
            if moved is not None:
                pending.append(_status_event(message, status.value, claim.attempts, error=error))
            if unhealthy is not None and message["channel"] is not None:
                marked = await conn.fetchval(
                    _UNHEALTHY, message["channel"], claim.tenant_id, unhealthy
                )
                if marked is not None:
                    pending.append(
                        PendingEvent(
                            tenant_id=claim.tenant_id,
                            type=ev.CHANNEL_STATE,
                            data={
                                "channel_id": message["channel"],
                                "state": "unhealthy",
                                "detail": unhealthy,
                            },
                        )
                    )
            return moved is not None, await record_events(conn, pending)

    moved, events = await _settling(claim, f"settle {status.value}", settle)
    await _publish(services, claim, events)
    log.warning(
        "message failed" if not unknown else "message marked unknown: it may have been sent",
        extra={"message_id": str(claim.message_id), "code": error.get("code")},
    )
    if not moved:
        return "skipped"
    return "unknown" if unknown else "failed"


async def _retry(
    services: Services,
    claim: Claim,
    message: dict[str, Any],
    error: dict[str, Any],
    retry_after: float | None,
    *,
    in_doubt: bool = False,
) -> Outcome:
    """Release the claim for a later attempt, or give up once attempts run out.

    `in_doubt`: a provider call (this one or an earlier holder's) may have been
    accepted, so the next holder must reconcile first, and giving up means `unknown`.
    """
    settings = services.settings
    if claim.attempts >= settings.send_max_attempts:
        return await _fail(
            services, claim, message, _exhausted(claim.attempts, error), unknown=in_doubt
        )
    delay = backoff_delay(
        claim.attempts,
        base=settings.send_retry_base_seconds,
        cap=settings.send_retry_max_seconds,
        retry_after=retry_after,
    )
    noted = {**error, "attempts": claim.attempts}

    async def release() -> bool:
        return await outbox.reschedule(claim, delay, noted, in_doubt=in_doubt)

    if await _settling(claim, "reschedule", release):
        schedule_kick(services, claim.message_id, delay)
    log.info(
        "send will be retried",
        extra={
            "message_id": str(claim.message_id),
            "attempts": claim.attempts,
            "delay": round(delay, 3),
            "code": error.get("code"),
        },
    )
    return "retry"


def schedule_kick(services: Services, message_id: uuid.UUID, delay: float) -> None:
    """Re-enqueue after `delay` seconds with a timer in this process.

    The brokers we use have no delayed delivery, and the row's `next_attempt_at` is the
    durable truth: if this process dies before the timer fires, the sweeper kicks it.
    """
    if delay <= 0:
        services.spawn(kick_send(services, message_id), name="guiche-send-retry")
        return
    loop = asyncio.get_running_loop()
    loop.call_later(
        delay,
        lambda: services.spawn(kick_send(services, message_id), name="guiche-send-retry"),
    )


async def _publish(services: Services, claim: Claim, events: list[BusEvent]) -> None:
    if not events:
        return
    await services.bus.publish(events)
    services.spawn(emit_hooks(services, claim.tenant_id, events), name="guiche-outbound-hooks")
