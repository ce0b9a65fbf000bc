"""What keeps a provider's batch storable whatever one of its messages carries.

Two rules, for every channel plugin (applied in `guiche.inbound.ingest`, the path core's
webhook route and plugins' `ingest_batch` share):

- text Postgres refuses (NUL, lone surrogates) is cleaned out of the whole normalised
  batch, raw payloads included, with `guiche.foundation.pgtext` before anything is stored;
- a message the database still refuses for its own content (`STORE_ERRORS`: a value too
  long, out of range, a constraint) is stored apart from its batch-mates, and when it
  fails alone it is reported (`report_failure`: an error log with its raw payload and
  `guiche_inbound_messages_failed_total`) while the others are kept.

Anything else (the database away, a lost connection) still fails the whole batch, so the
provider retries it and dedup keeps the retry exact.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import asyncpg
from prometheus_client import Counter

from guiche.channels import InboundMessage, WebhookBatch
from guiche.foundation.pgtext import clean_json, json_has_unstorable

if TYPE_CHECKING:
    from guiche.channel_host.runtime import ChannelRow

log = logging.getLogger("guiche.inbound")

#: The database refused the content itself: retrying the same message cannot succeed.
STORE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)

FAILED_MESSAGES = Counter(
    "guiche_inbound_messages_failed_total",
    "Inbound messages the database refused (stored apart from their batch, then dropped)",
    ["channel_type"],
)


def storable_batch(batch: WebhookBatch) -> WebhookBatch:
    """`batch` itself when every string in it is storable, else a cleaned copy."""
    data = batch.model_dump()
    if not json_has_unstorable(data):
        return batch
    return WebhookBatch.model_validate(clean_json(data))


def report_failure(channel: ChannelRow, message: InboundMessage, exc: Exception) -> None:
    """Make a message the database refused visible: its id, the error, its raw payload."""
    FAILED_MESSAGES.labels(channel.type).inc()
    log.error(
        "inbound message not stored: the database refused it (its batch-mates were stored)",
        extra={
            "channel": str(channel.id),
            "tenant": str(channel.tenant_id),
            "provider_message_id": message.provider_message_id[:200],
            "error": f"{type(exc).__name__}: {exc}"[:500],
            "payload": message.model_dump_json()[:4000],
        },
    )
