"""Smoke runs of the history and ws benchmarks: tiny sizes, real processes, and a report
that is well-formed, accounts for the work it says it did and reports no errors.
Timings are never asserted."""

from __future__ import annotations

from typing import Any

import pytest

from bench.common import REPORT_KEYS

from .test_bench_smoke import assert_clean, run_smoke

HISTORY_FIGURES = {
    "import_rows_per_second",
    "imported_rows",
    "import_duplicates",
    "latest50_http_p50_ms",
    "latest50_http_p99_ms",
    "latest50_sql_p99_ms",
    "hot_first_http_p50_ms",
    "hot_deep_http_p50_ms",
    "hot_deep_sql_p50_ms",
    "hot_before_deep_sql_p50_ms",
    "plan_deep_generic",
}
WS_FIGURES = {
    "sockets_connected",
    "rss_per_socket_kib",
    "fanout_p50_ms",
    "fanout_p99_ms",
    "frames_received",
    "frames_expected",
    "post_to_receipt_p99_ms",
    "ingest_acked_per_second",
}


def _well_formed(report: dict[str, Any], name: str, figures: set[str]) -> None:
    assert set(REPORT_KEYS) <= set(report)
    assert report["benchmark"] == name
    assert figures <= set(report["figures"])
    assert report["ceiling"] and report["ratio"]
    assert {"python", "postgres", "redis", "cpu_count"} <= set(report["environment"])
    for target in report["targets"]:
        assert target["met"] in (True, False, None)


@pytest.fixture(scope="module")
def server_url() -> str:
    import os

    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.skip("DATABASE_URL is not set: benchmarks need a Postgres server to create on")
    return url


def test_history_smoke_imports_every_message_and_times_each_page(
    server_url: str, require_redis: str
) -> None:
    report = run_smoke("history", server_url, require_redis)

    _well_formed(report, "history", HISTORY_FIGURES)
    figures, parameters = report["figures"], report["parameters"]
    assert figures["imported_rows"] == parameters["messages"]
    assert figures["import_duplicates"] == 0
    assert figures["conversations_created"] == parameters["contacts"]
    assert {"copy_rows_per_second", "latest50_sql_p99_ms"} <= set(report["ceiling"])
    assert_clean(report)


def test_ws_smoke_holds_every_socket_and_receives_the_fan_out(
    server_url: str, require_redis: str
) -> None:
    report = run_smoke("ws", server_url, require_redis)

    _well_formed(report, "ws", WS_FIGURES)
    figures, ceiling = report["figures"], report["ceiling"]
    assert figures["sockets_connected"] == report["parameters"]["sockets"]
    assert ceiling["sockets_connected"] == report["parameters"]["sockets"]
    assert figures["frames_received"] > 0 and ceiling["frames_received"] > 0
    assert_clean(report)
