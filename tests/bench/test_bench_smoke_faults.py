"""Smoke run of the fault benchmark: tiny load, every fault injected (worker kill -9,
Redis restart, Postgres restarts fast and immediate) on its own private servers, and
nothing acknowledged lost or sent twice. A lost or duplicated message makes
`bench.faults` exit 1, which fails `run_smoke`."""

from __future__ import annotations

import collections
import os
import shutil

import pytest

from bench.common import REPORT_KEYS
from bench.faults import MUST_BE_ZERO, Tally, count_outbound, failures
from bench.servers import _pg_bin

from .test_bench_smoke import assert_clean, run_smoke

FAULTS = {
    "kill -9 worker",
    "redis restart",
    "postgres restart -m fast",
    "postgres restart -m immediate",
}


@pytest.fixture(scope="module")
def servers_available() -> None:
    try:
        _pg_bin("initdb")
        _pg_bin("pg_ctl")
    except RuntimeError as exc:
        pytest.skip(str(exc))
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed: the fault run starts its own")


def test_fault_smoke_loses_and_duplicates_nothing(servers_available: None) -> None:
    # Its own servers: the session's DATABASE_URL / REDIS_URL are passed on, never used.
    report = run_smoke(
        "faults",
        os.environ.get("DATABASE_URL", ""),
        os.environ.get("REDIS_URL", ""),
        # ~40 s alone; a killed in-flight send waits out its 35 s lease and a 30 s sweep,
        # and a loaded machine starts the five processes slowly
        timeout=480,
    )

    assert set(REPORT_KEYS) <= set(report)
    assert {fault["fault"] for fault in report["faults"]} == FAULTS
    figures = report["figures"]
    assert figures["inbound_acked"] == report["parameters"]["inbound"]
    assert figures["outbound_accepted"] == report["parameters"]["outbound"]
    assert figures["inbound_stored"] >= figures["inbound_acked"]
    assert figures["all_settled"] is True
    assert {"postgres", "redis"} <= set(report["environment"])
    assert_clean(report)


def test_a_fault_run_with_a_duplicate_or_a_loss_fails() -> None:
    clean = dict.fromkeys(MUST_BE_ZERO, 0)
    assert failures({"figures": clean}) == []
    assert failures({"figures": clean | {"outbound_duplicates": 2}}) == ["outbound_duplicates=2"]


def test_outbound_counting_tells_duplicates_losses_and_visible_doubts_apart() -> None:
    tally = Tally(acked={0: "a", 1: "b", 2: "c", 3: "d"})
    rows = [
        {"id": "a", "status": "sent", "error": None, "body": "0"},
        {"id": "b", "status": "pending", "error": None, "body": "1"},
        {"id": "c", "status": "unknown", "error": '{"code": "send_outcome_unknown"}', "body": "2"},
        {"id": "d", "status": "sent", "error": None, "body": "3"},
    ]
    received = collections.Counter({"a": 2, "d": 1})

    counted = count_outbound(tally, rows, received)

    assert counted["duplicates"] == 1 and counted["duplicate_examples"] == ["a"]
    assert counted["lost"] == 1 and counted["lost_examples"] == [("b", "pending")]
    assert counted["unknown_not_received"] == 1
    assert counted["ended_by_reason"] == {"unknown: send_outcome_unknown": 1}
    assert counted["sent_but_not_received"] == 0
