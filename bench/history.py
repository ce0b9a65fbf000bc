"""history: the bulk import path against raw COPY, then history pages against raw SQL.

1. N messages over C contacts (one "hot" contact holds enough of them for a page 100
   pages deep) go through `guiche.plugin.import_history` — contacts, conversations,
   `message_keys` dedup, binary COPY — in calls of `--call-size` messages built before
   the clock starts. Figure: rows/s. Ceiling: asyncpg `copy_records_to_table` of the
   same rows (built beforehand too) into a scratch table identical to `messages`
   (same columns, indexes and foreign keys), in batches of the same size. A second
   scratch pair (messages + message_keys) shows the floor any dedup-aware import pays.
2. `guiche web` (real process, JWT from the login endpoint) serves
   `GET /api/v1/conversations/{id}/messages`: the latest 50 messages of random contacts'
   conversations, the latest 50 of the hot conversation and its page 100 pages deep
   (the cursor got by walking there). Ceiling: the page's SQL through raw asyncpg.

    python -m bench.history                      # 1M messages, the issue's default (~3 min)
    python -m bench.history --messages 250000    # a quicker look (~80 s)
    python -m bench.history --messages 10000000  # the issue's 10M
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import random
import re
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg

from bench.common import (
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
    profile_table,
    py_spy,
    ratio,
    run_benchmark,
    unmet,
    wants_profile,
)
from guiche.database.engine import POOL_SERVER_SETTINGS

TARGETS = (
    Target("history: bulk import share of raw COPY rows/s", "import_share_of_copy", ">=", 0.80),
    Target(
        "history: latest 50, p99 through raw SQL (at 10M)", "latest50_sql_p99_ms", "<=", 5, "ms"
    ),
    Target("history: latest 50, p99 through HTTP (at 10M)", "latest50_http_p99_ms", "<=", 15, "ms"),
    Target(
        "history: latest 50 of a long conversation, p99 SQL", "hot_first_sql_p99_ms", "<=", 5, "ms"
    ),
    Target(
        "history: latest 50 of a long conversation, p99 HTTP",
        "hot_first_http_p99_ms",
        "<=",
        15,
        "ms",
    ),
    Target("history: page 100 deep vs first, HTTP p50", "deep_vs_first_http_p50", "<=", 1.5, "x"),
    Target("history: page 100 deep vs first, SQL p50", "deep_vs_first_sql_p50", "<=", 1.5, "x"),
)

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
"""The imported history starts here, one message every 3 seconds."""

#: The page query `GET .../messages` runs, as Piccolo sends it (`guiche.http.pagination`):
#: every column, tenant-scoped, newest first, LIMIT written in (one extra row says whether
#: more follow), the keyset as a row comparison, on a connection with the pool's
#: `server_settings` (custom plans only, `guiche.database.engine.POOL_SERVER_SETTINGS`).
_SELECT = "SELECT ALL " + ", ".join(
    f'"messages"."{c}" AS "{c}"'
    for c in (
        "id created_at tenant conversation contact channel direction type body payload"
        " provider_message_id status error sender reply_to updated_at"
    ).split()
)
_CONVERSATION = '("messages"."tenant" = $1 AND "messages"."conversation" = $2)'
_ORDER = ' ORDER BY "messages"."created_at" DESC, "messages"."id" DESC LIMIT {limit}'
FIRST_PAGE_SQL = f'{_SELECT} FROM "messages" WHERE ({_CONVERSATION}){_ORDER}'
NEXT_PAGE_SQL = (
    f'{_SELECT} FROM "messages" WHERE ({_CONVERSATION}'
    f' AND ("messages"."created_at", "messages"."id") < ($3, $4)){_ORDER}'
)
#: Before (kept as a same-run reference, `hot_before_*`): the keyset as
#: `created_at < $3 OR (created_at = $3 AND id < $4)`, on a connection with Postgres'
#: default plan cache, which may switch to a generic plan from the sixth run on.
BEFORE_NEXT_PAGE_SQL = (
    f'{_SELECT} FROM "messages" WHERE ({_CONVERSATION} AND ("messages"."created_at" < $3'
    f' OR ("messages"."created_at" = $3 AND "messages"."id" < $4))){_ORDER}'
)


# --- the data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    messages: int
    contacts: int
    hot: int  # messages of contact 0, enough for `depth` pages and one more
    batch_size: int
    call_size: int
    samples: int
    depth: int
    page_size: int
    run: str

    def contact_of(self, i: int) -> int:
        """Contact 0 gets every `stride`-th message (until it has `hot`); the rest round-robin."""
        stride = max(1, self.messages // self.hot)
        if i % stride == 0 and i // stride < self.hot:
            return 0
        return 1 + i % (self.contacts - 1)

    def phone(self, contact: int) -> str:
        return f"55119{contact:08d}"

    def message(self, i: int) -> Any:
        from guiche.channels import InboundMessage, MessageType, Sender

        contact = self.contact_of(i)
        text = f"Mensagem {i} do histórico: pedido #{i % 100_000} confirmado, obrigado!"
        return InboundMessage(
            provider_message_id=f"wamid.hist.{self.run}.{i}",
            sender=Sender(phone=self.phone(contact), name=f"Cliente {contact}"),
            timestamp=T0 + dt.timedelta(seconds=3 * i),
            type=MessageType.TEXT,
            text=text,
            from_me=i % 3 == 0,
            raw={"from": self.phone(contact), "type": "text", "text": {"body": text}},
        )

    def calls(self, start: int, stop: int) -> Iterator[range]:
        for first in range(start, stop, self.call_size):
            yield range(first, min(stop, first + self.call_size))


# --- phase 1: the bulk import and its ceiling ----------------------------------------


async def import_phase(services: Any, channel: Any, plan: Plan, start: int, stop: int) -> dict:
    """Import messages [start, stop) in calls; only the calls are timed."""
    from guiche.plugin import import_history

    seconds = 0.0
    totals = {"inserted": 0, "duplicates": 0, "conversations_created": 0, "calls": 0}
    for indexes in plan.calls(start, stop):
        messages = [plan.message(i) for i in indexes]
        began = time.perf_counter()
        result = await import_history(services, channel, messages, batch_size=plan.batch_size)
        seconds += time.perf_counter() - began
        totals["inserted"] += result.inserted
        totals["duplicates"] += result.duplicates
        totals["conversations_created"] += result.conversations_created
        totals["calls"] += 1
    return {"seconds": round(seconds, 3), **totals}


async def scratch_like(conn: asyncpg.Connection, table: str, scratch: str) -> None:
    """`scratch` with `table`'s columns, defaults, indexes and foreign keys."""
    await conn.execute(f"CREATE TABLE {scratch} (LIKE {table} INCLUDING ALL)")
    foreign = await conn.fetch(
        "SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint"
        " WHERE conrelid = $1::regclass AND contype = 'f'",
        table,
    )
    for row in foreign:
        await conn.execute(f"ALTER TABLE {scratch} ADD {row['definition']}")


async def ceiling_phase(
    conn: asyncpg.Connection, plan: Plan, tenant_id: uuid.UUID, channel_id: uuid.UUID
) -> dict:
    """The same rows by raw COPY: into a `messages` twin, then also into a `message_keys` twin."""
    from guiche.inbound.bulk import MESSAGE_COLUMNS, _rows

    await scratch_like(conn, "messages", "bench_copy_messages")
    await scratch_like(conn, "message_keys", "bench_copy_keys")
    contacts = {
        row["phone"]: row["id"]
        for row in await conn.fetch("SELECT id, phone FROM contacts WHERE tenant = $1", tenant_id)
    }
    conversations = {
        row["contact"]: row["id"]
        for row in await conn.fetch(
            "SELECT contact, id FROM conversations WHERE tenant = $1", tenant_id
        )
    }
    key_columns = ("channel", "provider_message_id", "tenant", "message_id", "message_created_at")
    await conn.execute("CHECKPOINT")
    copy_seconds = keys_seconds = 0.0
    for indexes in plan.calls(0, plan.messages):
        messages = [plan.message(i) for i in indexes]
        records, keys = [], []
        for row in _rows(messages):
            contact = contacts[row.identity[1]]
            message_id = uuid.uuid4()
            records.append(
                (message_id, row.created_at, tenant_id, conversations[contact], contact,
                 channel_id, row.direction, row.type, row.body, row.payload,
                 row.provider_message_id, row.status, None)
            )  # fmt: skip
            keys.append(
                (channel_id, row.provider_message_id, tenant_id, message_id, row.created_at)
            )
        for first in range(0, len(records), plan.batch_size):
            began = time.perf_counter()
            await conn.copy_records_to_table(
                "bench_copy_messages",
                records=records[first : first + plan.batch_size],
                columns=MESSAGE_COLUMNS,
            )
            middle = time.perf_counter()
            await conn.copy_records_to_table(
                "bench_copy_keys",
                records=keys[first : first + plan.batch_size],
                columns=key_columns,
            )
            copy_seconds += middle - began
            keys_seconds += time.perf_counter() - middle
    return {"copy_seconds": round(copy_seconds, 3), "keys_seconds": round(keys_seconds, 3)}


# --- phase 2: history pages -----------------------------------------------------------


@dataclass
class Pages:
    hot: uuid.UUID
    others: list[uuid.UUID]
    deep_cursor: str
    deep_after: tuple[dt.datetime, uuid.UUID]


async def conversation_of(conn: asyncpg.Connection, tenant_id: uuid.UUID, phone: str) -> uuid.UUID:
    return await conn.fetchval(
        "SELECT v.id FROM conversations v JOIN contacts c ON c.id = v.contact"
        " WHERE c.tenant = $1 AND c.phone = $2",
        tenant_id,
        "+" + phone,
    )


async def find_pages(
    conn: asyncpg.Connection,
    session: aiohttp.ClientSession,
    stack: Stack,
    headers: dict[str, str],
    plan: Plan,
) -> Pages:
    """The hot conversation, a sample of others, and the cursor `depth` pages deep (walked
    through the API, so it is the cursor a client really holds)."""
    from guiche.http.pagination import decode_cursor

    tenant_id = stack.company.tenant_id
    hot = await conversation_of(conn, tenant_id, plan.phone(0))
    sample = random.Random(7).sample(range(1, plan.contacts), min(200, plan.contacts - 1))
    others = [await conversation_of(conn, tenant_id, plan.phone(c)) for c in sample]
    cursor: str | None = None
    for _ in range(plan.depth):
        query = f"?limit={plan.page_size}" + (f"&cursor={cursor}" if cursor else "")
        url = f"{stack.web_url}/api/v1/conversations/{hot}/messages{query}"
        async with session.get(url, headers=headers) as response:
            body = await response.json()
            if response.status != 200 or not body.get("next_cursor"):
                raise RuntimeError(f"walking pages stopped early: {response.status} {body}")
            cursor = body["next_cursor"]
    assert cursor is not None
    return Pages(hot, others, cursor, decode_cursor(cursor))


async def http_latencies(
    session: aiohttp.ClientSession, stack: Stack, headers: dict[str, str], plan: Plan, pages: Pages
) -> dict[str, list[float]]:
    """Sequential requests on one keep-alive connection, the three cases interleaved."""
    base = f"{stack.web_url}/api/v1/conversations"
    limit = f"?limit={plan.page_size}"
    cases = {
        "latest": lambda k: f"{base}/{pages.others[k % len(pages.others)]}/messages{limit}",
        "first": lambda k: f"{base}/{pages.hot}/messages{limit}",
        "deep": lambda k: f"{base}/{pages.hot}/messages{limit}&cursor={pages.deep_cursor}",
    }
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    warmup = min(30, plan.samples)
    for k in range(warmup + plan.samples):
        for name, url_of in cases.items():
            began = time.perf_counter()
            async with session.get(url_of(k), headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{name}: {response.status} {body[:300]!r}")
            if k >= warmup:
                seconds[name].append(time.perf_counter() - began)
    return seconds


async def sql_latencies(
    url: str, tenant_id: uuid.UUID, plan: Plan, pages: Pages
) -> dict[str, list[float]]:
    """The API's page queries through raw asyncpg (its statement cache, like Piccolo's;
    the pool's server settings), interleaved alike; and, on a second connection with
    Postgres' defaults, the queries as they were before (`before_*`)."""
    limit = plan.page_size + 1
    first, following, before_following = (
        sql.format(limit=limit) for sql in (FIRST_PAGE_SQL, NEXT_PAGE_SQL, BEFORE_NEXT_PAGE_SQL)
    )
    created, after_id = pages.deep_after
    conn = await asyncpg.connect(url, server_settings=POOL_SERVER_SETTINGS)
    before = await asyncpg.connect(url)
    try:
        others = pages.others
        cases = {
            "latest": lambda k: conn.fetch(first, tenant_id, others[k % len(others)]),
            "first": lambda k: conn.fetch(first, tenant_id, pages.hot),
            "deep": lambda k: conn.fetch(following, tenant_id, pages.hot, created, after_id),
            "before_first": lambda k: before.fetch(first, tenant_id, pages.hot),
            "before_deep": lambda k: before.fetch(
                before_following, tenant_id, pages.hot, created, after_id
            ),
        }
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        warmup = min(30, plan.samples)
        for k in range(warmup + plan.samples):
            for name, query in cases.items():
                began = time.perf_counter()
                rows = await query(k)
                if not rows or (name != "latest" and len(rows) != limit):
                    raise RuntimeError(f"{name}: {len(rows)} rows, expected {limit}")
                if k >= warmup:
                    seconds[name].append(time.perf_counter() - began)
    finally:
        await conn.close()
        await before.close()
    return seconds


async def page_plans(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, plan: Plan, pages: Pages
) -> dict[str, str]:
    """How Postgres runs the hot conversation's pages: the API's SQL under a generic plan
    (what a cached statement may get from its sixth run on) before the change, and the
    API's SQL under a custom plan: each plan's nodes, rows and buffers."""
    limit = plan.page_size + 1
    created, after_id = pages.deep_after
    first = f"'{tenant_id}', '{pages.hot}'"
    deep = f"{first}, '{created.isoformat()}', '{after_id}'"
    two, four = "(uuid, uuid)", "(uuid, uuid, timestamptz, uuid)"
    cases = (
        ("first_generic", FIRST_PAGE_SQL, two, first, "force_generic_plan"),
        ("deep_generic", BEFORE_NEXT_PAGE_SQL, four, deep, "force_generic_plan"),
        ("first", FIRST_PAGE_SQL, two, first, "force_custom_plan"),
        ("deep", NEXT_PAGE_SQL, four, deep, "force_custom_plan"),
    )
    plans = {}
    for name, sql, types, args, mode in cases:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
            await conn.execute(f"PREPARE bench_page {types} AS {sql.format(limit=limit)}")
            try:
                lines = await conn.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF)"
                    f" EXECUTE bench_page({args})"
                )
            finally:
                await conn.execute("DEALLOCATE bench_page")
        nodes = []
        for (line,) in lines:
            text = line.strip().removeprefix("->").strip()
            if text.startswith("Planning"):
                break
            if text.startswith(("Limit", "Sort", "Bitmap", "Index", "Seq Scan", "Heap", "Buffers")):
                nodes.append(re.sub(r"'[0-9a-f-]{36}'::uuid", "'…'::uuid", " ".join(text.split())))
        plans[name] = " > ".join(nodes)
    return plans


async def profile_web(
    stack: Stack, session: aiohttp.ClientSession, headers: dict[str, str], plan: Plan, pages: Pages,
    seconds: float,
) -> dict[str, Any]:  # fmt: skip
    """py-spy `guiche web` while the three page requests loop."""
    stop = asyncio.Event()

    async def load() -> None:
        url = f"{stack.web_url}/api/v1/conversations/{pages.hot}/messages?limit={plan.page_size}"
        while not stop.is_set():
            for target in (url, f"{url}&cursor={pages.deep_cursor}"):
                async with session.get(target, headers=headers) as response:
                    await response.read()

    task = asyncio.create_task(load())
    await asyncio.sleep(0.5)
    profile = await py_spy(stack.web.pid, seconds)
    stop.set()
    await task
    return profile.as_dict() | {"table": profile_table(profile)}


async def profile_import(
    services: Any, channel: Any, plan: Plan, rate: float, seconds: float
) -> dict[str, Any]:
    """A further import (new provider ids) under py-spy of this process, plus the wall
    time spent in each stage of the pipeline (stages overlap: they add up to more than
    the import took)."""
    from guiche.inbound import bulk

    count = max(plan.batch_size, int(rate * seconds))
    stages: dict[str, float] = {}
    originals = {name: getattr(bulk._Importer, name) for name in ("resolve", "claim", "write")}

    def timed(name: str, method: Any) -> Any:
        async def run(self: Any, *args: Any) -> Any:
            began = time.perf_counter()
            try:
                return await method(self, *args)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - began

        return run

    extra = dataclasses.replace(plan, run=plan.run + "p", messages=plan.messages + count)
    for name, method in originals.items():
        setattr(bulk._Importer, name, timed(name, method))
    try:
        spy = asyncio.create_task(py_spy(os.getpid(), seconds))
        timing = await import_phase(services, channel, extra, plan.messages, plan.messages + count)
        profile = await spy
    finally:
        for name, method in originals.items():
            setattr(bulk._Importer, name, method)
    described = {
        "resolve": "resolve: contacts + conversations (own transaction)",
        "claim": "claim: INSERT message_keys ... RETURNING",
        "write": "write: COPY messages + commit (2 in flight)",
    }
    rows = [(round(stages.get(name, 0.0), 3), text) for name, text in described.items()]
    text = profile_table(profile) + "\n\n" + format_table(("seconds", "import stage"), rows)
    text += f"\n(import of {count:,} rows took {timing['seconds']:.1f} s)"
    return profile.as_dict() | {
        "stage_seconds": {name: round(stages.get(name, 0.0), 3) for name in described},
        "import": timing,
        "table": text,
    }


# --- the run ---------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from guiche.channel_host.runtime import ChannelRow

    plan = plan_of(args)
    async with guiche_stack(args.server_url, args.redis_url, log_level=args.log_level) as stack:
        environment = await environment_facts(stack.database_url, stack.redis_url)
        tenant_id = stack.company.tenant_id
        channel = ChannelRow(stack.channel.id, tenant_id, "meta_cloud")
        conn = await asyncpg.connect(stack.database_url)
        try:
            async with plugin_services(stack.database_url) as services:
                await conn.execute("CHECKPOINT")
                imported = await import_phase(services, channel, plan, 0, plan.messages)
                copied = await ceiling_phase(conn, plan, tenant_id, stack.channel.id)
                began = time.perf_counter()
                await conn.execute("VACUUM (ANALYZE) messages")
                vacuum_seconds = time.perf_counter() - began
                async with aiohttp.ClientSession() as session:
                    headers = await login(session, stack.web_url, stack.company)
                    pages = await find_pages(conn, session, stack, headers, plan)
                    http = await http_latencies(session, stack, headers, plan, pages)
                    sql = await sql_latencies(stack.database_url, tenant_id, plan, pages)
                    explained = await page_plans(conn, tenant_id, plan, pages)
                    report = build_report(
                        args, plan, imported, copied, http, sql, explained, environment
                    )
                    report["figures"]["vacuum_analyze_seconds"] = round(vacuum_seconds, 1)
                    missed = set(unmet(report))
                    if wants_profile(args.profile, bool(missed)):
                        report["profile"] = await profiles(
                            args, plan, report, missed, stack, session, headers, pages,
                            services, channel, conn,
                        )  # fmt: skip
        finally:
            await conn.close()
    return report


async def profiles(
    args: argparse.Namespace, plan: Plan, report: dict[str, Any], missed: set[str], stack: Stack,
    session: aiohttp.ClientSession, headers: dict[str, str], pages: Pages, services: Any,
    channel: Any, conn: asyncpg.Connection,
) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {}
    everything = args.profile == "always"
    if everything or TARGETS[0].name in missed:
        rate = max(float(report["figures"]["import_rows_per_second"]), 1.0)
        out["import"] = await profile_import(services, channel, plan, rate, args.profile_seconds)
    if everything or missed & {t.name for t in TARGETS[1:]}:
        out["web"] = await profile_web(stack, session, headers, plan, pages, args.profile_seconds)
    return out


def build_report(
    args: argparse.Namespace,
    plan: Plan,
    imported: dict[str, Any],
    copied: dict[str, Any],
    http: dict[str, list[float]],
    sql: dict[str, list[float]],
    explained: dict[str, str],
    environment: dict[str, Any],
) -> dict[str, Any]:
    rows = plan.messages
    import_rate = per_second(imported["inserted"], imported["seconds"])
    copy_rate = per_second(rows, copied["copy_seconds"])
    both_rate = per_second(rows, copied["copy_seconds"] + copied["keys_seconds"])
    lat_http = {name: latency_ms(values) for name, values in http.items()}
    lat_sql = {name: latency_ms(values) for name, values in sql.items()}
    figures: dict[str, Any] = {
        "import_rows_per_second": import_rate,
        "import_seconds": imported["seconds"],
        "imported_rows": imported["inserted"],
        "import_duplicates": imported["duplicates"],
        "conversations_created": imported["conversations_created"],
    }
    for name, label in (("latest", "latest50"), ("first", "hot_first"), ("deep", "hot_deep")):
        figures[f"{label}_http_p50_ms"] = lat_http[name]["p50_ms"]
        figures[f"{label}_http_p99_ms"] = lat_http[name]["p99_ms"]
        figures[f"{label}_sql_p50_ms"] = lat_sql[name]["p50_ms"]
        figures[f"{label}_sql_p99_ms"] = lat_sql[name]["p99_ms"]
    for name in ("before_first", "before_deep"):
        figures[f"hot_{name}_sql_p50_ms"] = lat_sql[name]["p50_ms"]
        figures[f"hot_{name}_sql_p99_ms"] = lat_sql[name]["p99_ms"]
    figures |= {f"plan_{name}": text for name, text in explained.items()}
    ceiling = {
        "copy_rows_per_second": copy_rate,
        "copy_seconds": copied["copy_seconds"],
        "copy_with_keys_rows_per_second": both_rate,
        "keys_copy_seconds": copied["keys_seconds"],
        **{f"{label}_sql_p99_ms": lat_sql[name]["p99_ms"] for name, label in
           (("latest", "latest50"), ("first", "hot_first"), ("deep", "hot_deep"))},
    }  # fmt: skip
    ratios = {
        "import_share_of_copy": ratio(import_rate, copy_rate),
        "import_share_of_copy_with_keys": ratio(import_rate, both_rate),
        "deep_vs_first_http_p50": ratio(
            figures["hot_deep_http_p50_ms"], figures["hot_first_http_p50_ms"]
        ),
        "deep_vs_first_sql_p50": ratio(
            figures["hot_deep_sql_p50_ms"], figures["hot_first_sql_p50_ms"]
        ),
        "latest50_http_over_sql_p50": ratio(
            figures["latest50_http_p50_ms"], figures["latest50_sql_p50_ms"]
        ),
    }
    parameters = {
        "messages": plan.messages,
        "contacts": plan.contacts,
        "hot_contact_messages": plan.hot,
        "batch_size": plan.batch_size,
        "messages_per_import_call": plan.call_size,
        "samples_per_case": plan.samples,
        "page_size": plan.page_size,
        "deep_page": plan.depth,
        "smoke": args.smoke,
        "guiche_log_level": args.log_level,
        "server": "guiche web (1 process) for the pages; the import runs in this process",
        "ceiling_import": "asyncpg copy_records_to_table into a twin of messages (LIKE "
        "INCLUDING ALL + the same foreign keys), same batch size, rows built beforehand",
        "ceiling_pages": "the page's SQL through raw asyncpg prepared statements",
    }
    notes = [
        "import rows/s: rows inserted / time inside import_history (its input built untimed)",
        "the import also writes message_keys (dedup), contacts and conversations; "
        "copy_with_keys is the floor of any import that dedups through message_keys",
        "HTTP pages also run the API's visibility queries (conversation + departments)",
        "page latencies: one keep-alive connection, sequential, latest/first/deep interleaved",
        "the 5 ms / 15 ms targets are stated at 10M messages; compare parameters.messages",
        "client, guiche web, Postgres and Redis share this machine's CPUs",
    ]
    return make_report(
        "history",
        parameters=parameters,
        figures=figures,
        ceiling=ceiling,
        ratios=ratios,
        targets=TARGETS,
        environment=environment,
        notes=notes,
    )


def table(report: dict[str, Any]) -> str:
    f, c, r = report["figures"], report["ceiling"], report["ratio"]
    text = format_table(
        ("bulk import", "rows/s", "share"),
        [
            ("import_history", f["import_rows_per_second"], None),
            ("raw COPY messages (ceiling)", c["copy_rows_per_second"], r["import_share_of_copy"]),
            (
                "raw COPY messages + keys",
                c["copy_with_keys_rows_per_second"],
                r["import_share_of_copy_with_keys"],
            ),
        ],
    )
    rows = [
        (
            label,
            f[f"{key}_http_p50_ms"],
            f[f"{key}_http_p99_ms"],
            f[f"{key}_sql_p50_ms"],
            f[f"{key}_sql_p99_ms"],
        )
        for label, key in (
            ("latest 50, random contacts", "latest50"),
            ("hot conversation, first page", "hot_first"),
            (f"hot conversation, page {report['parameters']['deep_page']} deep", "hot_deep"),
        )
    ]
    text += "\n\n" + format_table(
        ("page", "HTTP p50 ms", "HTTP p99 ms", "SQL p50 ms", "SQL p99 ms"), rows
    )
    text += (
        "\nbefore (OR keyset, default plan cache), SQL, hot conversation: first page p50"
        f" {f['hot_before_first_sql_p50_ms']} ms, p99 {f['hot_before_first_sql_p99_ms']} ms;"
        f" page {report['parameters']['deep_page']} deep p50"
        f" {f['hot_before_deep_sql_p50_ms']} ms, p99 {f['hot_before_deep_sql_p99_ms']} ms"
    )
    for name in ("first_generic", "deep_generic", "first", "deep"):
        text += f"\nplan {name}: {f['plan_' + name]}"
    for name, profile in report.get("profile", {}).items():
        text += f"\n\nprofile ({name}):\n{profile['table']}"
    return text


def plan_of(args: argparse.Namespace) -> Plan:
    # the deep page sits inside a long conversation, not at its end
    hot = args.hot or 4 * (args.depth + 1) * args.page_size
    if args.messages < hot + args.contacts:
        raise SystemExit(f"--messages must be at least {hot + args.contacts} for these sizes")
    return Plan(
        messages=args.messages,
        contacts=args.contacts,
        hot=hot,
        batch_size=args.batch_size,
        call_size=args.call_size,
        samples=args.samples,
        depth=args.depth,
        page_size=args.page_size,
        run=secrets.token_hex(3),
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__ or "history benchmark")
    parser.add_argument(
        "--messages", type=int, help="messages to import (default 1M; the issue also names 10M)"
    )
    parser.add_argument("--contacts", type=int, help="contacts they come from (default 10,000)")
    parser.add_argument("--hot", type=int, help="messages of the deep-paged contact")
    parser.add_argument("--batch-size", type=int, default=5000, help="import_history batch_size")
    parser.add_argument(
        "--call-size", type=int, default=250_000, help="messages per import_history call"
    )
    parser.add_argument("--samples", type=int, help="timed requests per page case (default 200)")
    parser.add_argument("--depth", type=int, help="how deep the deep page is (default 100)")
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--profile-seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    small = args.smoke
    args.messages = args.messages or (2_000 if small else 1_000_000)
    args.contacts = args.contacts or (20 if small else 10_000)
    args.samples = args.samples or (5 if small else 200)
    args.depth = args.depth or (3 if small else 100)
    if small:
        args.page_size = min(args.page_size, 10)
        args.batch_size = min(args.batch_size, 300)
        args.call_size = min(args.call_size, 1_000)
        args.profile_seconds = min(args.profile_seconds, 1.0)
        args.profile = "never" if args.profile == "auto" else args.profile
    return args


def main(argv: Sequence[str] | None = None) -> None:
    run_benchmark(bench, table, parse_args(argv))


if __name__ == "__main__":
    main()
