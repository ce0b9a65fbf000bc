"""What keeps a provider's batch storable whatever one of its messages carries.

Two rules, for every channel plugin (applied in `guiche.inbound.ingest`, the path core's
webhook route and plugins' `ingest_batch` share):

- text Postgres refuses (NUL, lone surrogates) is cleaned out of the whole normalised
  batch, raw payloads included, with `guiche.foundation.pgtext` before anything is stored
  (and out of each message of a history import: `storable_document`, used by
  `guiche.inbound.bulk`);
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
from guiche.inbound.store import payload_document

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


#: How JSON writes U+0000 (Postgres's jsonb refuses even the escape).
_JSON_NUL = "\\u0000"


def storable_document(message: InboundMessage) -> tuple[InboundMessage, str]:
    """The message as it can be stored, and its payload document: the history import's
    per-message `storable_batch`. The document is the check, at the cost of a substring
    scan (a whole-batch dump costs more than the import's row): every string of the
    message is in it, JSON writes NUL one way only, and a lone surrogate cannot be
    encoded at all. A message that fails it is cleaned and its document built again."""
    try:
        document = payload_document(message)
    except (ValueError, TypeError):  # a lone surrogate: no JSON encoder takes it
        document = None
    if document is not None and _JSON_NUL not in document:
        return message, document
    message = type(message).model_validate(clean_json(message.model_dump()))
    return message, payload_document(message)


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
