"""`bench.chatguru` in smoke mode: the whole path runs (the fake panel's process, the
catalog job, the raw-COPY ceiling, the poller's passes) and the run is clean: every
message stored once, none lost. Timings are never asserted."""

from __future__ import annotations

import os

import pytest

from bench.common import REPORT_KEYS
from tests.bench.test_bench_smoke import run_smoke


def test_chatguru_benchmark_smoke(require_redis: str) -> None:
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        pytest.skip("DATABASE_URL is not set: benchmarks need a Postgres server to create on")
    report = run_smoke("chatguru", server_url, require_redis)
    assert set(REPORT_KEYS) <= set(report)
    figures = report["figures"]
    assert figures["catalog_state"] == "done"
    assert figures["catalog_messages_stored"] == figures["catalog_messages_expected"] > 0
    assert figures["duplicates"] == 0 and figures["missing"] == 0
    assert figures["errors"] == 0
    assert figures["poll_added"] > 0 and figures["lost"] == 0
    assert figures["poll_lag_p99_ms"] is not None
    assert report["ceiling"]["catalog_rows_per_second"] > 0
