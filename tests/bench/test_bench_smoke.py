"""Keep the benchmarks from rotting: each runs its whole code path with tiny sizes.

The report's shape is checked (well-formed JSON with the expected keys), and so is
that the run was clean: a benchmark whose server answered errors, or that stored a
duplicate, fails here (`assert_clean`). Timings from a smoke run mean nothing and are
never asserted. Each benchmark starts
real processes (`guiche web`, workers, fakes) against the session's Postgres server and
Redis, like `make bench` does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.common import REPORT_KEYS
from bench.ingest import WEEK, across_week

ROOT = Path(__file__).resolve().parents[2]

#: The benchmarks smoked here and the figures each must report (history, ws and faults
#: have their own smoke tests, which reuse `run_smoke`).
EXPECTED_FIGURES: dict[str, set[str]] = {
    "ingest": {
        "messages_per_second_1",
        "ack_p50_ms_1",
        "ack_p99_ms_1",
        "errors_1",
        "messages_per_second_20",
        "ack_p99_ms_20",
        "duplicate_rows_added",
        "messages_per_second_1_two_processes",
    },
    "send": {
        "sent_per_second",
        "limited_setting_per_second",
        "limited_achieved_per_second",
        "limited_error_percent",
    },
    "campaigns": {
        "imported_per_second",
        "sent_per_second_unpaced",
        "paced_10_error_percent",
        "paced_80_error_percent",
        "duplicates",
    },
}
#: Figures (and ceiling figures) that count errors, failures or duplicates: any but 0
#: means the run was broken, whatever its timings.
MUST_BE_ZERO: dict[str, dict[str, set[str]]] = {
    "ingest": {
        "figures": {
            "errors_1",
            "errors_20",
            "errors_open",
            "duplicate_errors",
            "duplicate_rows_added",
            "errors_1_two_processes",
        },
        "ceiling": {
            "errors_1",
            "errors_20",
            "same_writes_errors_1",
            "same_writes_errors_20",
        },
    },
    "send": {
        "figures": {"unlimited_failed", "limited_failed"},
        "ceiling": {"errors", "bare_httpx_errors"},
    },
    "history": {"figures": {"import_duplicates"}, "ceiling": set()},
    "ws": {"figures": {"ingest_errors", "ingest_abandoned"}, "ceiling": set()},
    "campaigns": {"figures": {"duplicates"}, "ceiling": set()},
    "reports": {"figures": {"http_errors", "export_rows_missing"}, "ceiling": set()},
    "faults": {
        "figures": {"inbound_lost", "inbound_duplicates", "outbound_lost", "outbound_duplicates"},
        "ceiling": set(),
    },
}
ENVIRONMENT_KEYS = {"python", "postgres", "redis", "cpu_count"}
TARGET_KEYS = {"name", "figure", "op", "threshold", "value", "met"}


def run_smoke(
    name: str, server_url: str, redis_url: str, *extra: str, timeout: float = 240
) -> dict[str, Any]:
    """Run `bench.<name> --smoke` and return its report. In its own process group, so a
    run that overstays `timeout` is killed with every process it started (servers,
    workers, fakes), not left running beside the next tests."""
    env = {**os.environ, "DATABASE_URL": server_url, "REDIS_URL": redis_url}
    argv = [sys.executable, "-m", f"bench.{name}", "--smoke", "--no-lock", "--profile", "never"]
    with subprocess.Popen(
        [*argv, *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError(
                f"bench.{name} --smoke overstayed {timeout:.0f} s (killed with its "
                f"processes):\n{stderr[-3000:]}"
            ) from None
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON document on stdout, got {len(lines)} lines"
    return json.loads(lines[0])


def assert_clean(report: dict[str, Any]) -> None:
    """The run reported no errors, failures or duplicates (each such figure is 0)."""
    zero = MUST_BE_ZERO[report["benchmark"]]
    found = {
        f"{part}.{key}": report[part].get(key)
        for part in ("figures", "ceiling")
        for key in zero[part]
    }
    assert None not in found.values(), f"figures missing from the report: {found}"
    broken = {key: value for key, value in found.items() if value != 0}
    assert not broken, f"the {report['benchmark']} run was not clean: {broken}"


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
    assert_clean(report)
    if name == "ingest":  # the same-writes ceiling really wrote Guichê's rows
        persisted = report["ceiling"]["same_writes_persisted_messages_1"]
        assert persisted == report["parameters"]["requests_1_per_request"]


@pytest.mark.parametrize(
    ("benchmark", "figures", "ceiling", "clean"),
    [
        ("ingest", {"errors_20": 3}, {}, False),
        ("ingest", {"duplicate_rows_added": 1}, {}, False),
        ("ingest", {}, {"errors_1": 2}, False),
        ("ingest", {}, {"same_writes_errors_20": 1}, False),
        ("send", {"limited_failed": 1}, {}, False),
        ("ws", {"ingest_errors": 4}, {}, False),
        ("faults", {"outbound_duplicates": 1}, {}, False),
        ("faults", {"inbound_lost": 2}, {}, False),
        ("ingest", {}, {}, True),
    ],
)
def test_a_run_that_reports_errors_or_duplicates_is_not_clean(
    benchmark: str, figures: dict[str, int], ceiling: dict[str, int], clean: bool
) -> None:
    zero = MUST_BE_ZERO[benchmark]
    report = {
        "benchmark": benchmark,
        "figures": dict.fromkeys(zero["figures"], 0) | figures,
        "ceiling": dict.fromkeys(zero["ceiling"], 0) | ceiling,
    }
    if clean:
        assert_clean(report)
    else:
        with pytest.raises(AssertionError, match="not clean"):
            assert_clean(report)


def test_across_week_dates_a_run_over_a_chunk_boundary() -> None:
    dated = across_week(1_764_936_000, weeks_ago=2)
    first, last = dated["timestamp"], dated["timestamp"] + dated["span"]
    assert first // WEEK + 1 == last // WEEK  # one boundary inside the run
    assert last < 1_764_936_000 - WEEK  # weeks no other run of the benchmark writes


def test_ingest_across_a_week_boundary_is_clean(server_url: str, require_redis: str) -> None:
    """New chunks created under concurrent ingest (TimescaleDB) answer no 5xx."""
    report = run_smoke("ingest", server_url, require_redis, "--across-week")

    assert report["parameters"]["across_week"] is True
    assert_clean(report)
