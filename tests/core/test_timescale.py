"""`messages` on TimescaleDB (marked `timescale`: run where DATABASE_URL's server has it),
the migration's decision on any server, and the parents' delete actions on both flavors."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from guiche.database import timescale
from tests.conftest import with_database

LOCK_WAIT_TIMEOUT = 10.0


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def _parents(
    conn: asyncpg.Connection, tenant: uuid.UUID | None = None
) -> dict[str, uuid.UUID]:
    """A contact, a channel and a conversation (of a new tenant unless given), written
    directly."""
    if tenant is None:
        tag = uuid.uuid4().hex[:12]
        tenant = await conn.fetchval(
            "INSERT INTO tenants (name, slug) VALUES ($1, $1) RETURNING id", f"ts-{tag}"
        )
    contact = await conn.fetchval(
        "INSERT INTO contacts (tenant, phone) VALUES ($1, $2) RETURNING id",
        tenant,
        f"+55119{random.randrange(10**7, 10**8)}",
    )
    channel = await conn.fetchval(
        "INSERT INTO channels (tenant, type, name) VALUES ($1, 'fake', 'x') RETURNING id", tenant
    )
    conversation = await conn.fetchval(
        "INSERT INTO conversations (tenant, contact, channel) VALUES ($1, $2, $3) RETURNING id",
        tenant,
        contact,
        channel,
    )
    return {"tenant": tenant, "contact": contact, "channel": channel, "conversation": conversation}


_INSERT_MESSAGE = """
INSERT INTO messages (created_at, tenant, conversation, contact, channel, direction, body)
VALUES ($1, $2, $3, $4, $5, 'in', 'x')
"""


async def _insert(conn: asyncpg.Connection, parents: dict[str, uuid.UUID], at: dt.datetime) -> None:
    await conn.execute(
        _INSERT_MESSAGE,
        at,
        parents["tenant"],
        parents["conversation"],
        parents["contact"],
        parents["channel"],
    )


def _chunkless_week() -> dt.datetime:
    """A time in a week no test has written (a new chunk on a hypertable)."""
    days = random.randrange(0, 300 * 365)
    return dt.datetime(2200, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=days)


async def _waits_on_lock(monitor: asyncpg.Connection, pid: int) -> bool:
    return bool(
        await monitor.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
    )


@pytest.mark.timescale
async def test_creating_a_chunk_does_not_deadlock_with_a_transaction_holding_a_contact(
    database_url, db
):
    """The issue's reproduction: A upserted a contact; B's insert creates the week's
    chunk; A inserts into the same week. With foreign keys on the hypertable B waits
    for `contacts` (cloning the keys onto the chunk), A for B's chunk: a deadlock."""
    parents = await _parents(db)
    week = _chunkless_week()
    a, b = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        b_pid = await b.fetchval("SELECT pg_backend_pid()")
        await a.execute("BEGIN")
        await a.execute("UPDATE contacts SET updated_at = now() WHERE id = $1", parents["contact"])
        await b.execute("BEGIN")
        creating = asyncio.create_task(_insert(b, parents, week))
        async with asyncio.timeout(LOCK_WAIT_TIMEOUT):  # B created the chunk, or waits
            while True:
                if creating.done() or await _waits_on_lock(db, b_pid):
                    break
                await asyncio.sleep(0.02)
        joining = asyncio.create_task(_insert(a, parents, week + dt.timedelta(hours=1)))
        async with asyncio.timeout(LOCK_WAIT_TIMEOUT * 2):
            await creating  # a deadlock raises here or in `joining`
            await b.execute("COMMIT")
            await joining
            await a.execute("COMMIT")
    finally:
        await a.close()
        await b.close()
    count = await db.fetchval(
        "SELECT count(*) FROM messages WHERE conversation = $1", parents["conversation"]
    )
    assert count == 2


@pytest.mark.timescale
async def test_the_hypertable_has_no_foreign_keys_no_time_index_and_compresses_per_conversation(
    db,
):
    foreign_keys = await db.fetchval(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'messages'::regclass AND contype = 'f'"
    )
    indexes = {
        r["indexname"]
        for r in await db.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'messages'")
    }
    report = await timescale.storage_report(db)

    assert foreign_keys == 0
    assert "messages_created_at_idx" not in indexes
    assert {"messages_conversation_idx", "messages_pkey"} <= indexes
    assert report["flavor"] == "timescaledb"
    assert report["chunk_interval"] == "7 days"
    assert report["compression"] == {
        "enabled": True,
        "segmentby": "conversation",
        "orderby": "created_at DESC,id DESC",
    }
    assert report["policy"]["compress_after"] == "30 days"
    # configured as intended (whether the policy's background runs succeed is the
    # server's business, reported in `problems` too: see the tests below)
    assert [p for p in report["problems"] if "last run failed" not in p] == []


@pytest.mark.timescale
async def test_a_page_of_a_compressed_conversation_decompresses_only_its_rows(db):
    mine = await _parents(db)
    other = await _parents(db, mine["tenant"])  # the same tenant's segment, before the fix
    week = _chunkless_week()
    for n in range(30):
        await _insert(db, mine, week + dt.timedelta(minutes=n))
        await _insert(db, other, week + dt.timedelta(minutes=n, seconds=30))
    chunk = await db.fetchval(
        "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'messages' AND range_start <= $1 AND range_end > $1",
        week,
    )
    await db.execute(f"SELECT compress_chunk('{chunk}')")

    plan = await db.fetchval(
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM messages WHERE conversation = $1"
        " ORDER BY created_at DESC, id DESC LIMIT 20",
        mine["conversation"],
    )
    rows = await db.fetch(
        "SELECT id FROM messages WHERE conversation = $1 ORDER BY created_at DESC, id DESC",
        mine["conversation"],
    )

    assert len(rows) == 30
    produced, filtered = _decompressed_rows(json.loads(plan))
    assert 20 <= produced <= 30  # its own rows (the LIMIT may stop it early) ...
    assert filtered == 0  # ... and none of the other conversation's


def _decompressed_rows(plan: Any) -> tuple[int, int]:
    """(rows produced, rows decompressed then filtered out) by the plan's decompression
    nodes, whatever this version calls them."""
    produced = filtered = 0

    def walk(node: dict[str, Any]) -> None:
        nonlocal produced, filtered
        kind = f"{node.get('Node Type', '')} {node.get('Custom Plan Provider', '')}"
        if "DecompressChunk" in kind or "ColumnarScan" in kind:
            produced += int(node.get("Actual Rows", 0))
            filtered += int(node.get("Rows Removed by Filter", 0))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    assert produced, f"no decompression in the plan: {plan}"
    return produced, filtered


async def test_deleting_parents_does_to_messages_what_the_foreign_keys_did(db):
    """Same on both flavors: triggers on the hypertable's parents, foreign keys otherwise."""
    kept, gone = await _parents(db), await _parents(db)
    at = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    await _insert(db, kept, at)
    await _insert(db, gone, at)
    second = await db.fetchval(
        "INSERT INTO conversations (tenant, contact, channel, status) VALUES ($1, $2, $3,"
        " 'CLOSED') RETURNING id",
        kept["tenant"],
        kept["contact"],
        kept["channel"],
    )
    await _insert(db, {**kept, "conversation": second}, at)

    await db.execute("DELETE FROM conversations WHERE id = $1", second)
    await db.execute("DELETE FROM channels WHERE id = $1", kept["channel"])  # cascades too
    await db.execute("DELETE FROM tenants WHERE id = $1", gone["tenant"])

    assert await db.fetchval("SELECT count(*) FROM messages WHERE tenant = $1", gone["tenant"]) == 0
    remaining = await db.fetch(
        "SELECT conversation, channel FROM messages WHERE tenant = $1", kept["tenant"]
    )
    assert remaining == []  # its conversation went with the channel, and its messages


async def test_deleting_a_contact_or_a_user_clears_it_from_messages(db):
    parents = await _parents(db)
    user = await db.fetchval(
        "INSERT INTO users (email) VALUES ($1) RETURNING id", f"{uuid.uuid4().hex}@example.test"
    )
    loose = await db.fetchval(
        "INSERT INTO contacts (tenant, name) VALUES ($1, 'solto') RETURNING id", parents["tenant"]
    )
    await db.execute(
        "INSERT INTO messages (tenant, conversation, contact, channel, direction, sender)"
        " VALUES ($1, $2, $3, $4, 'out', $5)",
        parents["tenant"],
        parents["conversation"],
        loose,
        parents["channel"],
        user,
    )

    await db.execute("DELETE FROM contacts WHERE id = $1", loose)
    await db.execute("DELETE FROM users WHERE id = $1", user)

    row = await db.fetchrow(
        "SELECT contact, sender, conversation FROM messages WHERE tenant = $1", parents["tenant"]
    )
    assert (row["contact"], row["sender"], row["conversation"]) == (
        None,
        None,
        parents["conversation"],
    )


# --- the migration's decision ------------------------------------------------------------


@pytest.mark.parametrize(
    ("available", "installed", "preload", "use", "says"),
    [
        (None, None, "", False, "not installed"),
        ("2.28.3", None, "", False, "installed but not preloaded"),
        ("2.28.3", None, "pg_stat_statements", False, "not preloaded"),
        ("2.28.3", None, "pg_stat_statements, timescaledb", True, "installed and preloaded"),
        ("2.28.3", None, '"$libdir/timescaledb-2.28.3"', True, "preloaded"),
        ("2.28.3", "2.28.3", "", True, "already created"),
    ],
)
def test_the_migration_decides_from_what_the_server_says(available, installed, preload, use, says):
    decision = timescale.decide(available, installed, preload)

    assert decision.use is use
    assert says in decision.reason


async def test_the_decision_on_this_server_is_logged_and_matches_its_storage(db, caplog):
    """5432 here has no TimescaleDB package (plain path); the 5433 cluster preloads it."""
    caplog.set_level(logging.INFO, logger="guiche.storage")
    available = await db.fetchval(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    preload = await db.fetchval("SHOW shared_preload_libraries")

    async with db.transaction():
        decision = await timescale.enable(db)

    assert decision == timescale.decide(
        available,
        await db.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"),
        preload,
    )
    assert decision.use is await timescale.is_hypertable(db)
    path = "TimescaleDB hypertable" if decision.use else "plain PostgreSQL table"
    assert [r.getMessage() for r in caplog.records] == [
        f"messages: {path}, because {decision.reason}"
    ]


# --- the storage report: /health/ready and `guiche doctor` -------------------------------


async def test_ready_reports_how_messages_are_stored(client, db):
    resp = await client.get("/health/ready")

    assert resp.status == 200
    body = await resp.json()
    report = body["storage_report"]
    assert report["flavor"] == body["storage"]
    if report["flavor"] == "postgres":
        assert report["reason"] == (await timescale.server_decision(db)).reason
        return
    assert report["chunk_interval"] == "7 days"
    assert report["compression"]["segmentby"] == "conversation"
    assert report["policy"]["compress_after"] == "30 days"
    assert {"last_run_status", "last_run_started_at", "total_failures", "last_error"} <= set(
        report["policy"]
    )
    assert report["problems"] == timescale.problems(report)


def _hypertable_report(**changes: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "flavor": "timescaledb",
        "license": "timescale",
        "compression": {"enabled": True, "segmentby": "conversation"},
        "policy": {"last_run_status": "Success", "last_error": None},
    }
    return report | changes


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"policy": {"last_run_status": None, "last_error": None}}, []),  # not run yet
        (
            {"policy": {"last_run_status": "Failed", "last_error": "out of disk"}},
            ["the compression policy's last run failed: out of disk"],
        ),
        ({"policy": None}, ["no compression policy on messages"]),
        (
            {"license": "apache", "compression": {"enabled": False}, "policy": None},
            ["compression is off on messages (an Apache-licensed TimescaleDB has none)"],
        ),
    ],
)
def test_compression_and_policy_failures_are_problems_not_silence(changes, expected):
    assert timescale.problems(_hypertable_report(**changes)) == expected


def _doctor(monkeypatch, capsys, **env: str) -> tuple[int, str]:
    from guiche.cli import main

    for name in ("GUICHE_SECRET_KEY", "GUICHE_ENCRYPTION_KEYS", "REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["doctor"])
    return code, capsys.readouterr().out


def _line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line[6:].startswith(name))


def test_doctor_passes_a_healthy_deployment_and_describes_its_storage(
    database_url, redis_url, encryption_key, tmp_path, monkeypatch, capsys
):
    env = {"DATABASE_URL": database_url, "GUICHE_STORAGE_PATH": str(tmp_path / "media")}
    env |= {"GUICHE_SECRET_KEY": "k" * 40, "GUICHE_ENCRYPTION_KEYS": encryption_key}
    if redis_url:
        env["REDIS_URL"] = redis_url
    code, out = _doctor(monkeypatch, capsys, **env)

    assert code == 0, out
    assert _line(out, "database").startswith("OK")
    assert _line(out, "migrations").startswith("OK")
    storage = _line(out, "storage")
    assert "7 days" in storage or "plain PostgreSQL table" in storage
    assert _line(out, "media storage").startswith("OK")
    assert "meta_cloud" in _line(out, "plugins")
    assert _line(out, "redis").startswith("OK" if redis_url else "WARN")


def test_doctor_fails_naming_each_problem_with_its_fix(database_url, tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    code, out = _doctor(
        monkeypatch,
        capsys,
        DATABASE_URL=with_database(database_url, "no_such_database_here"),
        REDIS_URL="redis://127.0.0.1:1/0",
        GUICHE_STORAGE_PATH=str(blocked),
    )

    assert code == 1
    lines = out.splitlines()
    for name, fix in (
        ("database", "fix: start PostgreSQL or correct DATABASE_URL"),
        ("redis", "fix: start Redis or correct REDIS_URL"),
        ("media storage", "fix: point GUICHE_STORAGE_PATH at a directory"),
    ):
        line = _line(out, name)
        assert line.startswith("FAIL"), out
        assert fix in lines[lines.index(line) + 1]
    assert _line(out, "keys").startswith("WARN")
    assert out.splitlines()[-1].startswith("3 failed")


async def test_doctor_names_pending_migrations(database_url, db, monkeypatch, capsys):
    name = f"guiche_doctor_{uuid.uuid4().hex[:8]}"
    await db.execute(f'CREATE DATABASE "{name}"')
    try:
        url = with_database(database_url, name)
        code, out = await asyncio.to_thread(_doctor, monkeypatch, capsys, DATABASE_URL=url)
    finally:
        await db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    assert code == 1
    assert _line(out, "migrations").startswith("FAIL")
    assert "run `guiche migrate`" in out
