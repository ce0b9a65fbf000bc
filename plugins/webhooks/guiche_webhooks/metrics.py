"""Prometheus metrics (served with core's on `/metrics`)."""

from prometheus_client import Counter, Histogram

DELIVERIES = Counter(
    "guiche_webhooks_deliveries_total",
    "Webhook POSTs by outcome (ok, http_error, network, refused)",
    ["outcome"],
)
#: The outcome's child, looked up once (a `labels()` call per POST costs as much as the
#: rest of the bookkeeping).
DELIVERED = {
    outcome: DELIVERIES.labels(outcome) for outcome in ("ok", "http_error", "network", "refused")
}
EVENTS = Counter("guiche_webhooks_events_delivered_total", "Events acknowledged by receivers")
LATENCY = Histogram(
    "guiche_webhooks_post_seconds", "Time a receiver took to answer a webhook POST"
)
LAG = Histogram(
    "guiche_webhooks_lag_seconds",
    "From an event's recording to its receiver's acknowledgement",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
)
PAUSES = Counter("guiche_webhooks_paused_total", "Subscriptions paused after their retry budget")
