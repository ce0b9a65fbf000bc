"""Prometheus counters (served by core's `/metrics` from the default registry)."""

from prometheus_client import Counter

SENDS = Counter(
    "guiche_campaign_sends_total",
    "Campaign targets handed to the outbox or settled without a send, by outcome",
    ["outcome"],  # queued | sent | failed | opted_out | replayed
)
TRANSITIONS = Counter(
    "guiche_campaign_transitions_total", "Campaign lifecycle transitions", ["status"]
)
OPT_OUTS = Counter("guiche_campaign_opt_outs_total", "Opt-outs recorded", ["source"])
