"""Keep the benchmarks from rotting: each runs its whole code path with tiny sizes.

Only the report's shape is checked (well-formed JSON with the expected keys); figures
from a smoke run mean nothing and timings are never asserted. Each benchmark starts
real processes (`guiche web`, workers, fakes) against the session's Postgres server and
Redis, like `make bench` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.common import REPORT_KEYS

ROOT = Path(__file__).resolve().parents[2]

#: The benchmarks smoked here and the figures each must report (history and ws have
#: their own smoke tests, which reuse `run_smoke`).
EXPECTED_FIGURES: dict[str, set[str]] = {
    "ingest": {
        "messages_per_second_1",
        "ack_p50_ms_1",
        "ack_p99_ms_1",
        "errors_1",
        "messages_per_second_20",
        "ack_p99_ms_20",
        "duplicate_rows_added",
    },
    "send": {
        "sent_per_second",
        "limited_setting_per_second",
        "limited_achieved_per_second",
        "limited_error_percent",
    },
}
ENVIRONMENT_KEYS = {"python", "postgres", "redis", "cpu_count"}
TARGET_KEYS = {"name", "figure", "op", "threshold", "value", "met"}


def run_smoke(name: str, server_url: str, redis_url: str) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": server_url, "REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--smoke", "--no-lock", "--profile", "never"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON document on stdout, got {len(lines)} lines"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.skip("DATABASE_URL is not set: benchmarks need a Postgres server to create on")
    return url


@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_benchmark_smoke_run_reports_every_key(
    name: str, server_url: str, require_redis: str
) -> None:
    report = run_smoke(name, server_url, require_redis)

    assert set(REPORT_KEYS) <= set(report)
    assert report["benchmark"] == name
    assert isinstance(report["figures"], dict) and report["figures"]
    assert isinstance(report["ceiling"], dict) and report["ceiling"]
    assert isinstance(report["ratio"], dict)
    assert EXPECTED_FIGURES[name] <= set(report["figures"])
    assert ENVIRONMENT_KEYS <= set(report["environment"])
    assert report["targets"], "every benchmark reports the issue's targets"
    for target in report["targets"]:
        assert TARGET_KEYS <= set(target)
        assert target["met"] in (True, False, None)
