"""Smoke run of the reports benchmark: tiny sizes, real `guiche web`, and a report that is
well-formed, accounts for every seeded conversation (rollups, export) and reports no
errors. Timings are never asserted."""

from __future__ import annotations

import os

import pytest

from bench.common import REPORT_KEYS
from bench.reports import CASES

from .test_bench_smoke import assert_clean, run_smoke


@pytest.fixture(scope="module")
def server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.skip("DATABASE_URL is not set: benchmarks need a Postgres server to create on")
    return url


def test_reports_smoke_builds_rollups_times_each_case_and_exports_every_row(
    server_url: str, require_redis: str
) -> None:
    report = run_smoke("reports", server_url, require_redis)

    assert set(REPORT_KEYS) <= set(report)
    assert report["benchmark"] == "reports"
    figures, ceiling, parameters = report["figures"], report["ceiling"], report["parameters"]
    assert figures["conversations"] == parameters["conversations"]
    assert (
        figures["messages"] == parameters["conversations"] * parameters["messages_per_conversation"]
    )
    assert figures["hourly_rows"] > 0 and figures["block_rows"] > 0
    for case in CASES:
        assert figures[f"{case}_http_p99_ms"] is not None
        assert ceiling[f"{case}_sql_p99_ms"] is not None
    assert figures["export_rows"] == ceiling["copy_csv_rows"] == parameters["conversations"]
    assert figures["export_peak_rss_mib"] > 0
    assert {t["figure"] for t in report["targets"]} == {
        "dashboard_http_p99_ms",
        "agent30_http_p99_ms",
    }
    assert_clean(report)
