"""Prometheus metrics (process-wide registry, served by core's `/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CATALOG_MESSAGES = Counter(
    "guiche_chatguru_catalog_messages",
    "Messages the ChatGuru catalog read, by result (inserted, duplicate).",
    ("result",),
)
CATALOG_CHATS = Counter("guiche_chatguru_catalog_chats", "Chats the ChatGuru catalog finished.")
CATALOG_ERRORS = Counter(
    "guiche_chatguru_catalog_errors",
    "Chats or jobs of the ChatGuru catalog that failed.",
    ("kind",),
)
ODD_ITEMS = Counter(
    "guiche_chatguru_odd_items",
    "Panel items that did not fit the expected shape (skipped), by reason.",
    ("reason",),
)
CATALOG_RATE = Gauge(
    "guiche_chatguru_catalog_rows_per_second", "Rows per second of the running catalog job."
)
POLL_MESSAGES = Counter("guiche_chatguru_poll_messages", "Messages the live poller stored.")
POLL_ERRORS = Counter("guiche_chatguru_poll_errors", "Polls of a ChatGuru account that failed.")
POLL_LAG = Histogram(
    "guiche_chatguru_poll_lag_seconds",
    "From a message's time upstream to its storage by the poller.",
    buckets=(0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60, 300),
)
