"""reports: the dashboard and aggregates from rollups at a million finished conversations,
against raw SQL of the same statements; the CSV export against Postgres' own COPY.

1. Seeding, in SQL (timed, but not a figure of the plugin): agents, departments,
   channels, tabulations, contacts, N closed conversations over `--days` local days and
   `--messages-per-conversation` messages each (`generate_series`), and each
   conversation's metrics row in `reports_conversations` with times drawn log-uniformly.
   Message bodies are one short word: the messages only give the database its size (no
   report reads them), and long bodies would make the seeding mostly the trigram index.
   The metrics rows are written directly, not measured from timelines by the plugin
   (measuring a million timelines is the catch-up's job and is not timed here); they are
   consistent with the seeded conversations (ids, agent, department, channel,
   tabulation, close time, message counts). The catch-up cursor is set past them.
2. Rollups built by the plugin's own code (`store.rebuild_day` for every day, in this
   process): total seconds, and per day p50/p99 (what one close costs at this size).
3. `guiche web` (real process, JWT from the login endpoint) serves, sequentially on one
   keep-alive connection: `GET dashboard`; `GET aggregates?by=agent` over 30 and 365
   days and `by=day` over 30 days (day blocks); `by=agent` with two filters over 30 days
   (the blocks keyed by all four ids); `by=agent` asked by a supervisor of one department
   (own or my departments: the department x agent blocks); `by=hour` with a department
   filter (the full-key hourly rollups). Ceiling: each statement the handler sends, through raw
   asyncpg. Also `aggregate()` called in this process (no HTTP).
4. `GET conversations.csv` of every row: rows/s and the web process' peak RSS
   (`VmHWM`, reset before); ceiling: `COPY (same SELECT) TO STDOUT (FORMAT csv)`.

    python -m bench.reports                              # 1M conversations, 10M messages
    python -m bench.reports --conversations 100000       # a quicker look
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import (
    Company,
    Stack,
    Target,
    base_parser,
    environment_facts,
    format_table,
    guiche_stack,
    latency_ms,
    login,
    make_report,
    per_second,
    plugin_services,
    ratio,
    run_benchmark,
)

TARGETS = (
    Target("reports: dashboard p99 through HTTP", "dashboard_http_p99_ms", "<=", 50, "ms"),
    Target(
        "reports: 30-day aggregate by agent p99 through HTTP", "agent30_http_p99_ms", "<=", 50, "ms"
    ),
)
ZONE = "America/Sao_Paulo"
CASES = (
    "dashboard",
    "agent30",
    "agent365",
    "day30",
    "filters30",
    "supervisor30",
    "hourly30",
)
API = "/api/v1/plugins/reports"


@dataclass(frozen=True)
class Plan:
    conversations: int
    messages_per_conversation: int
    days: int
    agents: int
    departments: int
    channels: int
    tabulations: int
    samples: int
    chunk: int

    @property
    def contacts(self) -> int:
        return max(1, self.conversations // 3)


def plan_of(args: argparse.Namespace) -> Plan:
    if args.smoke:
        return Plan(2000, 2, 40, 6, 2, 2, 3, 10, 1000)
    return Plan(
        args.conversations,
        args.messages_per_conversation,
        args.days,
        args.agents,
        args.departments,
        args.channels,
        args.tabulations,
        args.samples,
        args.chunk,
    )


# --- phase 1: seeding -------------------------------------------------------------------

_SEED = """
CREATE TEMP TABLE seed AS
SELECT g,
       gen_random_uuid() AS id,
       1 + g % {contacts} AS contact_n,
       1 + (g * 7) % {agents} AS agent_n,
       1 + (g * 7) % {agents} % {departments} AS department_n,
       1 + g % {channels} AS channel_n,
       1 + (g * 13) % {tabulations} AS tabulation_n,
       closed_at,
       w, w + r AS first_response, h, w + r + h AS duration,
       0.5 + 0.5 * random() AS business,
       CASE WHEN g % 19 = 0 THEN 1 ELSE 0 END AS transfers,
       CASE WHEN g % 23 = 0 THEN 1 ELSE 0 END AS reopens
FROM (
    SELECT g,
           now() - random() * interval '{days} days' AS closed_at,
           round(exp(ln(5) + random() * ln(1800.0 / 5)))::float8 AS w,
           round(exp(ln(10) + random() * ln(600.0 / 10)))::float8 AS r,
           round(exp(ln(60) + random() * ln(7200.0 / 60)))::float8 AS h
    FROM generate_series({first}, {last}) g
) s
"""

_CONVERSATIONS = """
INSERT INTO conversations (id, tenant, contact, channel, department, assignee, status,
    tabulation, opened_at, created_at, closed_at, queued_at, assigned_at, first_agent_reply_at,
    last_message_at)
SELECT s.id, $1, c.id, ch.id, d.id, a.id, 'CLOSED', t.id,
       s.closed_at - s.duration * interval '1 second',
       s.closed_at - s.duration * interval '1 second',
       s.closed_at, s.closed_at - s.duration * interval '1 second',
       s.closed_at - (s.duration - s.w) * interval '1 second',
       s.closed_at - s.h * interval '1 second', s.closed_at
FROM seed s
JOIN seed_contacts c ON c.n = s.contact_n
JOIN seed_agents a ON a.n = s.agent_n
JOIN seed_departments d ON d.n = s.department_n
JOIN seed_channels ch ON ch.n = s.channel_n
JOIN seed_tabulations t ON t.n = s.tabulation_n
"""

_MESSAGES = """
INSERT INTO messages (created_at, tenant, conversation, contact, channel, direction, body,
    status, sender)
SELECT v.closed_at - (s.duration * (1 - k::float8 / ({per} + 1))) * interval '1 second',
       $1, s.id, v.contact, v.channel,
       CASE WHEN k % 2 = 1 THEN 'in' ELSE 'out' END,
       (ARRAY['oi', 'ok', 'sim', 'não', 'obg', 'pix'])[1 + (g + k) % 6],
       'sent', CASE WHEN k % 2 = 0 THEN v.assignee END
FROM seed s JOIN conversations v ON v.id = s.id, generate_series(1, {per}) k
"""

_METRICS = """
INSERT INTO reports_conversations (tenant, conversation, contact, channel, channel_type,
    department, agent, tabulation, opened_at, queued_at, first_assigned_at,
    first_agent_message_at, closed_at, day, hour, messages_in, messages_out, transfers,
    reopens, waiting_s, waiting_bs, first_response_s, first_response_bs, handling_s,
    handling_bs, duration_s, duration_bs, response_sum_s, response_sum_bs, response_count,
    sla_met)
SELECT $1, v.id, v.contact, v.channel, 'meta_cloud', v.department, v.assignee, v.tabulation,
       v.opened_at, v.queued_at, v.assigned_at, v.first_agent_reply_at, v.closed_at,
       (v.closed_at AT TIME ZONE '{zone}')::date,
       extract(hour FROM v.closed_at AT TIME ZONE '{zone}')::smallint,
       ({per} + 1) / 2, {per} / 2, s.transfers, s.reopens,
       s.w, round(s.w * s.business), s.first_response, round(s.first_response * s.business),
       s.h, round(s.h * s.business), s.duration, round(s.duration * s.business),
       s.first_response * ({per} + 1) / 2, round(s.first_response * s.business) * ({per} + 1) / 2,
       ({per} + 1) / 2, round(s.first_response * s.business) <= 900
FROM seed s JOIN conversations v ON v.id = s.id
"""


async def _numbered(
    conn: asyncpg.Connection, name: str, insert: str, count: int, *args: Any
) -> list[uuid.UUID]:
    """`count` rows made by `insert` (one per `g`), numbered 1..count in temp table `name`."""
    ids = [r["id"] for r in await conn.fetch(insert.format(count=count), *args)]
    await conn.execute(f"CREATE TEMP TABLE {name} (n int PRIMARY KEY, id uuid NOT NULL)")
    await conn.copy_records_to_table(name, records=list(enumerate(ids, 1)))
    return ids


async def _supervisor(
    conn: asyncpg.Connection, tenant: uuid.UUID, department: uuid.UUID, run: str
) -> tuple[Company, uuid.UUID]:
    """A supervisor of the first department (who logs in): their reports are scoped to
    "own or my departments", a question on agent and department."""
    from guiche.auth.passwords import hash_password

    email, password = f"supervisor-{run}@bench.guiche.local", secrets.token_urlsafe(16)
    user = await conn.fetchval(
        "INSERT INTO users (email, name, password_hash) VALUES ($1, 'Supervisora', $2)"
        " RETURNING id",
        email,
        hash_password(password),
    )
    await conn.execute(
        "INSERT INTO memberships (tenant, \"user\", role, status) VALUES ($1, $2, 'supervisor',"
        " 'online')",
        tenant,
        user,
    )
    await conn.execute(
        'INSERT INTO department_members (tenant, department, "user") VALUES ($1, $2, $3)',
        tenant,
        department,
        user,
    )
    return Company(tenant, email, password), user


async def seed(conn: asyncpg.Connection, stack: Stack, plan: Plan) -> dict[str, Any]:
    """Everything in SQL; returns seconds per part and the ids the measurements use."""
    tenant = stack.company.tenant_id
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    await conn.execute("SELECT setseed(0.18)")
    run = secrets.token_hex(3)
    agents = await _numbered(
        conn,
        "seed_agents",
        "INSERT INTO users (email, name) SELECT 'agent-' || g || '-{run}@bench.guiche.local',"
        " 'Agente ' || g FROM generate_series(1, {count}) g RETURNING id".replace("{run}", run),
        plan.agents,
    )
    await conn.execute(
        "INSERT INTO memberships (tenant, \"user\", role, status) SELECT $1, id, 'agent',"
        " CASE WHEN n % 3 = 0 THEN 'away' ELSE 'online' END FROM seed_agents",
        tenant,
    )
    departments = await _numbered(
        conn,
        "seed_departments",
        "INSERT INTO departments (tenant, name) SELECT $1, 'Fila ' || g"
        " FROM generate_series(1, {count}) g RETURNING id",
        plan.departments,
        tenant,
    )
    supervisor = await _supervisor(conn, tenant, departments[0], run)
    channels = [stack.channel.id]
    if plan.channels > 1:
        channels += [
            r["id"]
            for r in await conn.fetch(
                "INSERT INTO channels (tenant, type, name) SELECT $1, 'fake', 'Canal ' || g"
                " FROM generate_series(2, $2) g RETURNING id",
                tenant,
                plan.channels,
            )
        ]
    await conn.execute("CREATE TEMP TABLE seed_channels (n int PRIMARY KEY, id uuid NOT NULL)")
    await conn.copy_records_to_table("seed_channels", records=list(enumerate(channels, 1)))
    await _numbered(
        conn,
        "seed_tabulations",
        "INSERT INTO tabulations (tenant, name) SELECT $1, 'Motivo ' || g"
        " FROM generate_series(1, {count}) g RETURNING id",
        plan.tabulations,
        tenant,
    )
    await _numbered(
        conn,
        "seed_contacts",
        "INSERT INTO contacts (tenant, name, phone) SELECT $1, 'Cliente ' || g,"
        " '+5511' || lpad(g::text, 9, '0') FROM generate_series(1, {count}) g RETURNING id",
        plan.contacts,
        tenant,
    )
    seconds["people"] = time.perf_counter() - began
    for part in ("conversations", "messages", "metrics"):
        seconds[part] = 0.0
    for first in range(1, plan.conversations + 1, plan.chunk):
        last = min(plan.conversations, first + plan.chunk - 1)
        await conn.execute("DROP TABLE IF EXISTS seed")
        await conn.execute(
            _SEED.format(
                first=first,
                last=last,
                contacts=plan.contacts,
                agents=plan.agents,
                departments=plan.departments,
                channels=plan.channels,
                tabulations=plan.tabulations,
                days=plan.days,
            )
        )
        for part, sql in (
            ("conversations", _CONVERSATIONS),
            ("messages", _MESSAGES),
            ("metrics", _METRICS),
        ):
            began = time.perf_counter()
            if part != "messages" or plan.messages_per_conversation:
                await conn.execute(
                    sql.format(per=plan.messages_per_conversation, zone=ZONE), tenant
                )
            seconds[part] += time.perf_counter() - began
        done = {k: round(v) for k, v in seconds.items()}
        print(f"seeded {last:,} of {plan.conversations:,} ({done} s)", file=sys.stderr, flush=True)
    began = time.perf_counter()
    await conn.execute(
        "INSERT INTO reports_cursor (tenant, closed_at, conversation)"
        " SELECT tenant, closed_at, id FROM conversations WHERE tenant = $1 AND status = 'CLOSED'"
        " ORDER BY closed_at DESC, id DESC LIMIT 1",
        tenant,
    )
    await conn.execute("VACUUM (ANALYZE) conversations, messages, reports_conversations")
    seconds["vacuum_analyze"] = time.perf_counter() - began
    counts = {
        "messages": await conn.fetchval("SELECT count(*) FROM messages WHERE tenant = $1", tenant),
        "conversations": await conn.fetchval(
            "SELECT count(*) FROM reports_conversations WHERE tenant = $1", tenant
        ),
    }
    return {
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "counts": counts,
        "agents": agents,
        "departments": departments,
        "channels": channels,
        "supervisor": supervisor[0],
        "supervisor_id": supervisor[1],
    }


# --- phase 2: rollups -------------------------------------------------------------------


async def build_rollups(
    conn: asyncpg.Connection, services: Any, tenant: uuid.UUID, today: dt.date
) -> dict[str, Any]:
    """Every day's rollups as the catch-up builds them (`store.rebuild_days`, then
    `store.advance` completes the blocks up to yesterday); then what one live close costs
    (`store.store_rows` of one of today's rows, stored again: its old contribution taken
    out of its groups, the new one added), today's full rebuild (`store.rebuild_day`: its
    hourly and level-0 rows from every row of the day) and a past day's (the busiest day,
    with every block above it), and a change on that past day (`store_rows` of one of its
    rows: its groups at level 0 and in every block above), each repeated."""
    from guiche_reports import store

    days = [
        r["day"]
        for r in await conn.fetch(
            "SELECT DISTINCT day FROM reports_conversations WHERE tenant = $1 ORDER BY 1", tenant
        )
    ]
    began = time.perf_counter()
    await store.rebuild_days(services, tenant, days)
    levelled = time.perf_counter()
    await store.advance(services, tenant, today)
    total = time.perf_counter() - began
    advance_seconds = time.perf_counter() - levelled
    await conn.execute("ANALYZE reports_hourly, reports_blocks")
    busiest = await conn.fetchrow(
        "SELECT day, count(*) AS n FROM reports_conversations WHERE tenant = $1 AND day < $2"
        " GROUP BY day ORDER BY n DESC LIMIT 1",
        tenant,
        today,
    )
    live = await conn.fetchval(
        "SELECT count(*) FROM reports_conversations WHERE tenant = $1 AND day = $2", tenant, today
    )
    closing = await conn.fetch(
        f"SELECT {', '.join(store.METRIC_COLUMNS)} FROM reports_conversations"
        " WHERE tenant = $1 AND day = $2 LIMIT 10",
        tenant,
        today if live else busiest["day"],
    )
    late = await conn.fetch(
        f"SELECT {', '.join(store.METRIC_COLUMNS)} FROM reports_conversations"
        " WHERE tenant = $1 AND day = $2 LIMIT 10",
        tenant,
        busiest["day"],
    )
    per_day: list[float] = []
    past_day: list[float] = []
    close: list[float] = []
    past_close: list[float] = []
    for k in range(10):
        started = time.perf_counter()
        await store.rebuild_day(services, tenant, today)
        per_day.append(time.perf_counter() - started)
        started = time.perf_counter()
        await store.rebuild_day(services, tenant, busiest["day"])
        past_day.append(time.perf_counter() - started)
        row = closing[k % len(closing)]
        started = time.perf_counter()
        await store.store_rows(services, tenant, [tuple(row)], [])
        close.append(time.perf_counter() - started)
        started = time.perf_counter()
        await store.store_rows(services, tenant, [tuple(late[k % len(late)])], [])
        past_close.append(time.perf_counter() - started)
    return {
        "close": latency_ms(close),
        "past_close": latency_ms(past_close),
        "seconds": round(total, 1),
        "days": len(days),
        "advance_seconds": round(advance_seconds, 1),
        "per_day": latency_ms(per_day),
        "past_day": latency_ms(past_day),
        "today_rows": live,
        "busiest_day_rows": busiest["n"],
        "hourly_rows": await conn.fetchval(
            "SELECT count(*) FROM reports_hourly WHERE tenant = $1", tenant
        ),
        "block_rows": await conn.fetchval(
            "SELECT count(*) FROM reports_blocks WHERE tenant = $1", tenant
        ),
        "rollup_mib": round(
            await conn.fetchval(
                "SELECT (pg_total_relation_size('reports_hourly')"
                " + pg_total_relation_size('reports_blocks')) / 1048576.0"
            ),
            1,
        ),
    }


# --- phase 3: dashboard and aggregates ------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    params: dict[str, str]  # for GET aggregates; {} = the dashboard
    scope: Any  # aggregates.Scope for the same question (None: the dashboard)
    by: str
    supervisor: bool = False  # asked by the seeded supervisor (else the owner)


def cases(tenant: uuid.UUID, today: dt.date, seeded: dict[str, Any]) -> list[Case]:
    from guiche_reports.aggregates import Scope
    from guiche_reports.visibility import Visibility

    month, year = today - dt.timedelta(days=29), today - dt.timedelta(days=364)
    two = {"department": seeded["departments"][0], "channel": seeded["channels"][0]}
    scoped = Visibility(
        all=False,
        user_id=seeded["supervisor_id"],
        departments=frozenset({seeded["departments"][0]}),
        departments_in_full=True,
    )

    def q(by: str, first: dt.date, **extra: str) -> dict[str, str]:
        return {"by": by, "from": first.isoformat(), "to": today.isoformat(), **extra}

    return [
        Case("dashboard", {}, Scope(tenant, today, today, {}), "total"),
        Case("agent30", q("agent", month), Scope(tenant, month, today, {}), "agent"),
        Case("agent365", q("agent", year), Scope(tenant, year, today, {}), "agent"),
        Case("day30", q("day", month), Scope(tenant, month, today, {}), "day"),
        Case(
            "filters30",
            q("agent", month, department_id=str(two["department"]), channel_id=str(two["channel"])),
            Scope(tenant, month, today, two),
            "agent",
        ),
        Case(
            "supervisor30",
            q("agent", month),
            Scope(tenant, month, today, {}, scoped),
            "agent",
            supervisor=True,
        ),
        Case(
            "hourly30",
            q("hour", month, department_id=str(two["department"])),
            Scope(tenant, month, today, {"department": two["department"]}),
            "hour",
        ),
    ]


def statements(case: Case, frontier: dt.date | None) -> list[tuple[str, list[Any]]]:
    """The statements the handler sends for this question (the dashboard: its rollup
    read; the queue snapshot's statements are core's and not in the ceiling; the read of
    the frontier, a primary-key lookup, is left out)."""
    from guiche_reports import aggregates

    plan = aggregates.block_plan(case.scope, case.by)
    if plan is None:
        totals, hists, args = aggregates.hourly_sql(case.scope, case.by)
        return [(totals, args), (hists, args)]
    with_hists = case.name != "dashboard"
    return [aggregates.block_sql(case.scope, case.by, plan, with_hists, frontier)]


async def timed(
    samples: int, run: Callable[[Case], Awaitable[None]], all_cases: list[Case]
) -> dict[str, list[float]]:
    """Sequential calls, the cases interleaved; the first few of each are warm-up."""
    seconds: dict[str, list[float]] = {c.name: [] for c in all_cases}
    warmup = min(20, samples)
    for k in range(warmup + samples):
        for case in all_cases:
            began = time.perf_counter()
            await run(case)
            if k >= warmup:
                seconds[case.name].append(time.perf_counter() - began)
    return seconds


async def measure_queries(
    stack: Stack,
    services: Any,
    session: aiohttp.ClientSession,
    headers: dict[str, str],
    supervisor_headers: dict[str, str],
    all_cases: list[Case],
    samples: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]], int]:
    from guiche_reports import aggregates

    from guiche.database.engine import POOL_SERVER_SETTINGS

    errors = 0

    async def http(case: Case) -> None:
        nonlocal errors
        path = "dashboard" if case.name == "dashboard" else "aggregates"
        async with session.get(
            f"{stack.web_url}{API}/{path}",
            params=case.params,
            headers=supervisor_headers if case.supervisor else headers,
        ) as response:
            await response.read()
            if response.status != 200:
                errors += 1

    conn = await asyncpg.connect(stack.database_url, server_settings=POOL_SERVER_SETTINGS)
    try:
        frontier = await conn.fetchval(
            "SELECT day FROM reports_frontier WHERE tenant = $1", stack.company.tenant_id
        )
        prepared = {c.name: statements(c, frontier) for c in all_cases}

        async def sql(case: Case) -> None:
            for text, args in prepared[case.name]:
                await conn.fetch(text, *args)

        async def inproc(case: Case) -> None:
            await aggregates.aggregate(
                services, case.scope, case.by, percentiles=case.name != "dashboard"
            )

        return (
            await timed(samples, http, all_cases),
            await timed(samples, sql, all_cases),
            await timed(samples, inproc, all_cases),
            errors,
        )
    finally:
        await conn.close()


# --- phase 4: the export -----------------------------------------------------------------


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak(pid: int) -> None:
    """VmHWM := VmRSS (Linux `clear_refs`), so the next VmHWM is this phase's peak."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


async def export(
    stack: Stack, session: aiohttp.ClientSession, headers: dict[str, str]
) -> dict[str, Any]:
    """Every row as CSV through HTTP (read and dropped as it comes); the web process' peak
    RSS during it (VmHWM reset first); then Postgres' COPY of the same SELECT."""
    from guiche_reports import listing

    pid = stack.web.pid
    before = _rss_kib(pid, "VmRSS")
    _reset_peak(pid)
    lines = 0
    began = time.perf_counter()
    async with session.get(f"{stack.web_url}{API}/conversations.csv", headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"export: {response.status} {await response.text()}")
        async for chunk in response.content.iter_chunked(1 << 16):
            lines += chunk.count(b"\n")
    seconds = time.perf_counter() - began
    peak = _rss_kib(pid, "VmHWM")
    query = listing.Query(stack.company.tenant_id, None, None, {})
    sql, args = query.sql(None, None)
    conn = await asyncpg.connect(stack.database_url)
    try:
        copied = 0

        def sink(data: bytes) -> None:
            nonlocal copied
            copied += data.count(b"\n")

        async def write(data: bytes) -> None:
            sink(data)

        literal = sql.replace("$1", f"'{stack.company.tenant_id}'::uuid")
        assert len(args) == 1
        copy_began = time.perf_counter()
        await conn.copy_from_query(f"{literal}", output=write, format="csv")
        copy_seconds = time.perf_counter() - copy_began
    finally:
        await conn.close()
    return {
        "rows": lines - 1,
        "seconds": round(seconds, 2),
        "rss_before_mib": round(before / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "copy_rows": copied,
        "copy_seconds": round(copy_seconds, 2),
    }


# --- the run -------------------------------------------------------------------------------


async def enable_reports(
    session: aiohttp.ClientSession, stack: Stack, headers: dict[str, str]
) -> None:
    async with session.put(
        f"{stack.web_url}/api/v1/plugins/reports",
        json={"enabled": True, "settings": {"timezone": ZONE}},
        headers=headers,
    ) as response:
        if response.status != 200:
            raise RuntimeError(f"enabling reports: {response.status} {await response.text()}")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    plan = plan_of(args)
    async with guiche_stack(args.server_url, args.redis_url, log_level=args.log_level) as stack:
        environment = await environment_facts(stack.database_url, stack.redis_url)
        tenant = stack.company.tenant_id
        conn = await asyncpg.connect(stack.database_url)
        try:
            seeded = await seed(conn, stack, plan)
            async with plugin_services(stack.database_url) as services:
                today = dt.datetime.now(ZoneInfo(ZONE)).date()
                rollups = await build_rollups(conn, services, tenant, today)
                all_cases = cases(tenant, today, seeded)
                async with aiohttp.ClientSession() as session:
                    headers = await login(session, stack.web_url, stack.company)
                    await enable_reports(session, stack, headers)
                    supervisor = await login(session, stack.web_url, seeded["supervisor"])
                    http, sql, inproc, errors = await measure_queries(
                        stack, services, session, headers, supervisor, all_cases, plan.samples
                    )
                    exported = await export(stack, session, headers)
        finally:
            await conn.close()
    environment["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return build_report(plan, seeded, rollups, http, sql, inproc, errors, exported, environment)


def build_report(
    plan: Plan,
    seeded: dict[str, Any],
    rollups: dict[str, Any],
    http: dict[str, list[float]],
    sql: dict[str, list[float]],
    inproc: dict[str, list[float]],
    errors: int,
    exported: dict[str, Any],
    environment: dict[str, Any],
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "conversations": seeded["counts"]["conversations"],
        "messages": seeded["counts"]["messages"],
        "seed_seconds": seeded["seconds"],
        "rollup_build_seconds": rollups["seconds"],
        "rollup_days": rollups["days"],
        "advance_seconds": rollups["advance_seconds"],
        "close_p50_ms": rollups["close"]["p50_ms"],
        "close_max_ms": rollups["close"]["max_ms"],
        "past_close_p50_ms": rollups["past_close"]["p50_ms"],
        "past_close_max_ms": rollups["past_close"]["max_ms"],
        "today_rebuild_p50_ms": rollups["per_day"]["p50_ms"],
        "today_rebuild_max_ms": rollups["per_day"]["max_ms"],
        "today_conversations": rollups["today_rows"],
        "past_day_rebuild_p50_ms": rollups["past_day"]["p50_ms"],
        "past_day_rebuild_max_ms": rollups["past_day"]["max_ms"],
        "busiest_day_conversations": rollups["busiest_day_rows"],
        "hourly_rows": rollups["hourly_rows"],
        "block_rows": rollups["block_rows"],
        "rollup_mib": rollups["rollup_mib"],
        "http_errors": errors,
    }
    ceiling: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for name in http:
        h, s, p = latency_ms(http[name]), latency_ms(sql[name]), latency_ms(inproc[name])
        figures[f"{name}_http_p50_ms"] = h["p50_ms"]
        figures[f"{name}_http_p99_ms"] = h["p99_ms"]
        figures[f"{name}_inprocess_p50_ms"] = p["p50_ms"]
        figures[f"{name}_inprocess_p99_ms"] = p["p99_ms"]
        ceiling[f"{name}_sql_p50_ms"] = s["p50_ms"]
        ceiling[f"{name}_sql_p99_ms"] = s["p99_ms"]
        ratios[f"{name}_http_over_sql_p50"] = ratio(h["p50_ms"], s["p50_ms"])
    export_rate = per_second(exported["rows"], exported["seconds"])
    copy_rate = per_second(exported["copy_rows"], exported["copy_seconds"])
    figures |= {
        "export_rows": exported["rows"],
        "export_rows_per_second": export_rate,
        "export_rss_before_mib": exported["rss_before_mib"],
        "export_peak_rss_mib": exported["peak_rss_mib"],
        "export_rows_missing": seeded["counts"]["conversations"] - exported["rows"],
    }
    ceiling |= {"copy_csv_rows": exported["copy_rows"], "copy_csv_rows_per_second": copy_rate}
    ratios["export_share_of_copy"] = ratio(export_rate, copy_rate)
    parameters = {
        "conversations": plan.conversations,
        "messages_per_conversation": plan.messages_per_conversation,
        "days": plan.days,
        "agents": plan.agents,
        "departments": plan.departments,
        "channels": plan.channels,
        "tabulations": plan.tabulations,
        "contacts": plan.contacts,
        "samples_per_case": plan.samples,
    }
    notes = [
        "seeded in SQL (generate_series): the metrics rows are written, not measured from "
        "timelines; rollups are built by the plugin's store.rebuild_day",
        "cases: dashboard (today), agent30/agent365/day30 (single-dimension day blocks), "
        "filters30 (by agent with a department and a channel filter: the blocks keyed by all "
        "four ids), supervisor30 (by agent, a supervisor's own-or-my-departments scope: the "
        "department x agent blocks), hourly30 (by hour with a department filter: the full-key "
        "hourly rollups)",
        "ceiling: the handler's statements through raw asyncpg (dashboard: its rollup read "
        "only, not core's queue snapshot); inprocess: aggregate() without HTTP",
    ]
    return make_report(
        "reports",
        parameters=parameters,
        figures=figures,
        ceiling=ceiling,
        ratios=ratios,
        targets=TARGETS,
        environment=environment,
        notes=notes,
    )


def table(report: dict[str, Any]) -> str:
    f, c = report["figures"], report["ceiling"]
    rows = [
        (
            name,
            f[f"{name}_http_p50_ms"],
            f[f"{name}_http_p99_ms"],
            f[f"{name}_inprocess_p50_ms"],
            c[f"{name}_sql_p50_ms"],
            c[f"{name}_sql_p99_ms"],
        )
        for name in CASES
    ]
    text = format_table(
        ("case", "HTTP p50 ms", "HTTP p99 ms", "in-process p50 ms", "SQL p50 ms", "SQL p99 ms"),
        rows,
    )
    text += (
        f"\n\n{f['conversations']:,} conversations, {f['messages']:,} messages; seeding "
        f"{f['seed_seconds']} s; rollups {f['rollup_build_seconds']} s for {f['rollup_days']} "
        f"days (advance {f['advance_seconds']} s); a live close {f['close_p50_ms']} ms (p50), "
        f"today ({f['today_conversations']:,} rows) rebuilt whole in "
        f"{f['today_rebuild_p50_ms']} ms, a past day"
        f" ({f['busiest_day_conversations']:,} rows) and its blocks in "
        f"{f['past_day_rebuild_p50_ms']} ms, a change on it {f['past_close_p50_ms']} ms; "
        f"{f['hourly_rows']:,} hourly + "
        f"{f['block_rows']:,} block rows ({f['rollup_mib']} MiB)"
        f"\nexport: {f['export_rows']:,} rows at {f['export_rows_per_second']:,} rows/s "
        f"(COPY csv {c['copy_csv_rows_per_second']:,} rows/s), web RSS "
        f"{f['export_rss_before_mib']} -> peak {f['export_peak_rss_mib']} MiB"
    )
    return text


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--messages-per-conversation", type=int, default=10)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--departments", type=int, default=4)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--tabulations", type=int, default=6)
    parser.add_argument("--samples", type=int, default=200, help="requests per case")
    parser.add_argument("--chunk", type=int, default=100_000, help="conversations per seed step")
    args = parser.parse_args(argv)
    run_benchmark(bench, table, args)


if __name__ == "__main__":
    main()
