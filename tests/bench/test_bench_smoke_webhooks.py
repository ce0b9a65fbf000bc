"""`bench.webhooks` in smoke mode: the whole path runs (a real receiver process, the
worker's passes, the bare loop) and the run is clean. Timings are never asserted."""

from __future__ import annotations

import os

import pytest

from bench.common import REPORT_KEYS
from tests.bench.test_bench_smoke import run_smoke


def test_webhooks_benchmark_smoke(require_redis: str) -> None:
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        pytest.skip("DATABASE_URL is not set: benchmarks need a Postgres server to create on")
    report = run_smoke("webhooks", server_url, require_redis)
    assert set(REPORT_KEYS) <= set(report)
    figures = report["figures"]
    assert {"deliveries_per_second", "lag_p99_ms", "produced_per_second"} <= set(figures)
    assert figures["events_delivered"] == figures["deliveries"]  # max_batch 1: one per POST
    assert figures["duplicates"] == 0 and figures["out_of_order"] == 0
    assert figures["lag_events"] > 0
    assert report["ceiling"]["deliveries_per_second"] > 0
