"""TimescaleDB, the optional storage of `messages`: whether to use it, how, and what it got.

The migrations decide from what the server says (`pg_available_extensions`,
`shared_preload_libraries`) *before* trying `CREATE EXTENSION timescaledb`: with the
package installed but not preloaded that statement is FATAL (the connection closes),
which no savepoint can catch, so trying first would stop `guiche migrate`. Either way
the path taken and why is logged. `storage_report()` says what the database actually
has (hypertable, chunk interval, compression settings, the compression policy's runs
and failures) for `/health/ready` and `guiche doctor`, so a setting that failed to
apply shows up there instead of disappearing in a savepoint.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("guiche.storage")

EXTENSION = "timescaledb"
CHUNK_INTERVAL = "7 days"


@dataclass(frozen=True)
class Decision:
    """Whether the migration turns `messages` into a hypertable, and why (for the log)."""

    use: bool
    reason: str


def preloaded(shared_preload_libraries: str) -> bool:
    """Whether `timescaledb` is among the server's preloaded libraries (any spelling the
    setting allows: quoted, `$libdir/timescaledb`, with a version suffix)."""
    for entry in shared_preload_libraries.split(","):
        name = entry.strip().strip('"').rsplit("/", 1)[-1]
        if name == EXTENSION or name.startswith(f"{EXTENSION}-"):
            return True
    return False


def decide(
    available_version: str | None, installed_version: str | None, shared_preload_libraries: str
) -> Decision:
    """The hypertable path only where `CREATE EXTENSION timescaledb` can work."""
    if installed_version is not None:
        return Decision(True, f"the timescaledb extension {installed_version} is already created")
    if available_version is None:
        return Decision(
            False, "timescaledb is not installed on the server (not in pg_available_extensions)"
        )
    if not preloaded(shared_preload_libraries):
        return Decision(
            False,
            f"timescaledb {available_version} is installed but not preloaded "
            f"(shared_preload_libraries = {shared_preload_libraries!r}); add it there and "
            "restart PostgreSQL before the first migration to get a hypertable",
        )
    return Decision(True, f"timescaledb {available_version} is installed and preloaded")


async def server_decision(conn: Any) -> Decision:
    """`decide()` on what the server behind `conn` says."""
    row = await conn.fetchrow(
        "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = $1",
        EXTENSION,
    )
    preload = await conn.fetchval("SHOW shared_preload_libraries")
    return decide(
        row["default_version"] if row else None, row["installed_version"] if row else None, preload
    )


async def enable(conn: Any) -> Decision:
    """Create the extension when the server can load it; log which path and why.

    Runs inside the migration's transaction; a refusal we did not foresee (a role
    without the right to create it) is caught in a savepoint and means the plain path.
    """
    decision = await server_decision(conn)
    if decision.use:
        try:
            async with conn.transaction():
                await conn.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
        except Exception as exc:  # asyncpg's error for whatever the server refused
            decision = Decision(False, f"CREATE EXTENSION timescaledb failed: {exc}")
    if decision.use:
        log.info("messages: TimescaleDB hypertable, because %s", decision.reason)
    else:
        log.warning("messages: plain PostgreSQL table, because %s", decision.reason)
    return decision


async def is_hypertable(conn: Any, table: str = "messages") -> bool:
    if await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = $1", EXTENSION) is None:
        return False
    found = await conn.fetchval(
        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = $1", table
    )
    return found is not None


async def apply_optional(conn: Any, what: str, sql: str) -> str | None:
    """Run DDL the hypertable can live without (compression, its policy) in a savepoint;
    log the outcome and return the server's refusal, if any.

    An Apache-licensed TimescaleDB has no compression: the hypertable still works, the
    refusal is logged here and `storage_report()` keeps showing compression off.
    """
    try:
        async with conn.transaction():
            await conn.execute(sql)
    except Exception as exc:  # asyncpg's error for whatever the server refused
        log.warning("messages: %s not applied: %s", what, exc)
        return str(exc)
    log.info("messages: %s applied", what)
    return None


# --- what the database has ---------------------------------------------------------------

_HYPERTABLE = """
SELECT h.compression_enabled, h.num_chunks, d.time_interval,
       current_setting('timescaledb.license', true) AS license,
       (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS version
FROM timescaledb_information.hypertables h
JOIN timescaledb_information.dimensions d
  ON d.hypertable_schema = h.hypertable_schema AND d.hypertable_name = h.hypertable_name
WHERE h.hypertable_name = 'messages'
LIMIT 1
"""

_SETTINGS = """
SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings
WHERE hypertable = 'messages'::regclass
"""

_POLICY = """
SELECT j.job_id, j.schedule_interval, j.config->>'compress_after' AS compress_after,
       s.last_run_status, s.last_run_started_at, s.last_successful_finish,
       s.total_runs, s.total_failures, s.next_start,
       (SELECT e.err_message FROM timescaledb_information.job_errors e
        WHERE e.job_id = j.job_id ORDER BY e.start_time DESC LIMIT 1) AS last_error
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
WHERE j.proc_name = 'policy_compression' AND j.hypertable_name = 'messages'
LIMIT 1
"""


def _when(value: dt.datetime | None) -> str | None:
    # TimescaleDB reports "never" as -infinity, which asyncpg gives as datetime.min
    if value is None or value.year <= 1:
        return None
    return value.isoformat()


def _interval(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        days, seconds = value.days, value.seconds
        return f"{days} days" if not seconds else str(value)
    return str(value)


async def storage_report(conn: Any) -> dict[str, Any]:
    """What `messages` is stored as, and every problem with it, as JSON-ready data.

    `problems` lists what an operator should look at (compression refused or off, the
    policy missing, its last run failed); empty when all is as intended.
    """
    if not await is_hypertable(conn):
        decision = await server_decision(conn)
        return {
            "flavor": "postgres",
            "reason": decision.reason
            if not decision.use
            else "messages was created as a plain table before timescaledb was available",
            "problems": [],
        }
    row = await conn.fetchrow(_HYPERTABLE)
    report: dict[str, Any] = {
        "flavor": "timescaledb",
        "version": row["version"],
        "license": row["license"],
        "chunk_interval": _interval(row["time_interval"]),
        "chunks": row["num_chunks"],
        "compression": {"enabled": bool(row["compression_enabled"])},
        "policy": None,
        "problems": [],
    }
    if row["compression_enabled"]:
        settings = await conn.fetchrow(_SETTINGS)
        if settings is not None:
            report["compression"].update(
                segmentby=settings["segmentby"], orderby=settings["orderby"]
            )
    policy = await conn.fetchrow(_POLICY)
    if policy is not None:
        report["policy"] = {
            "job_id": policy["job_id"],
            "compress_after": policy["compress_after"],
            "schedule_interval": _interval(policy["schedule_interval"]),
            "last_run_status": policy["last_run_status"],
            "last_run_started_at": _when(policy["last_run_started_at"]),
            "last_successful_finish": _when(policy["last_successful_finish"]),
            "next_start": _when(policy["next_start"]),
            "total_runs": policy["total_runs"],
            "total_failures": policy["total_failures"],
            "last_error": policy["last_error"],
        }
    report["problems"] = problems(report)
    return report


def problems(report: dict[str, Any]) -> list[str]:
    """What an operator should look at in a hypertable's report: compression refused or
    off, no policy, the policy's last run failed (with the server's error)."""
    found = []
    if not report["compression"]["enabled"]:
        apache = report["license"] == "apache"
        found.append(
            "compression is off on messages"
            + (" (an Apache-licensed TimescaleDB has none)" if apache else "")
        )
    policy = report["policy"]
    if policy is None:
        if report["compression"]["enabled"]:
            found.append("no compression policy on messages")
    elif policy["last_run_status"] == "Failed":
        found.append(
            f"the compression policy's last run failed: {policy['last_error'] or 'see job_errors'}"
        )
    return found
