"""The ChatGuru cataloger (plugins/chatguru, issue 16): catalog rows/s against raw COPY of
the same rows in the same run, and the live poller's lag.

    python -m bench.chatguru [--messages 1000000] [--chats 10000] [--page-size 100]
        [--concurrency 8] [--changes 100] [--poll-seconds 30] [--rounds 4]

- **Setup**: Guichê's app in this process (`guiche.app.create_app` on a local port, as a
  worker's services, its garbage collector tuned as `guiche worker` tunes it), a
  company created by `guiche tenants create`, the plugin enabled and a `chatguru`
  channel created through `POST /api/v1/channels` (core validates, encrypts and
  provisions it: the login and a chat-list read against the fake).
  `bench.fake_chatguru` (its own process) serves `--chats` chats of
  `--messages / --chats` messages each, generated on the fly in the fixtures' shapes.
- **Catalog and ceiling, in `--rounds` interleaved rounds**: the host's speed drifts over
  minutes (the same raw COPY measured 8,800 to 16,400 rows/s in one day), so a catalog
  timed in one stretch and its ceiling in the next compared two different machines. Round
  k shows the first k/rounds of the chats in the fake's chat list (`POST /_visible`),
  runs a job over them (chats done in earlier rounds are skipped, as a resumed job
  does), then COPYs that round's rows; a `CHECKPOINT` precedes each side of each round.
- **Catalog**: `create_job` + `run_catalog` (the task's body) in this process;
  figure = distinct messages stored ÷ the jobs' wall time (listing the chats included).
  The per-account rate bucket is lifted for this run only (a limiter that always
  allows), so the figure is the cataloger's own pace; `rate_bound_messages_per_second`
  says what the plugin's maximum `requests_per_second` (100) would allow with these
  pages. **Ceiling**: each round's rows, read back and written with asyncpg
  `copy_records_to_table` (fresh ids, batches of 5,000) into one twin of `messages`
  (`LIKE … INCLUDING ALL` + its foreign keys), which grows round by round as `messages`
  does.
- **Poll lag**: the same account (all `--chats` catalogued, watermarks set); polling at
  the plugin's minimum interval (2 s), `requests_per_second` 100 with the real limiter;
  `poll_due` is fired every second as the scheduler does. Every interval the fake adds
  one message to `--changes` random chats; lag = the time this process first sees the
  message stored (its key in `message_keys`, which commits with the row in `messages`;
  checked every 50 ms) − the time the fake added the message.
  `lost` = added but not stored within 30 s of the last addition.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from cryptography.fernet import Fernet

from bench.common import (
    Target,
    base_parser,
    bench_database,
    create_company,
    environment_facts,
    fetchrow,
    fetchval,
    format_table,
    free_port,
    latency_ms,
    login,
    make_report,
    per_second,
    python_module,
    ratio,
    run_benchmark,
    running,
)

POLL_INTERVAL = 2.0
"""The plugin's minimum `poll_interval_seconds`."""
POLL_RPS = 100.0
"""The plugin's maximum `requests_per_second`."""
COPY_BATCH = 5000
COPY_TWIN = "bench_copy_messages"
LOST_AFTER = 30.0
WATCH_EVERY = 0.05

TARGETS = (
    Target("catalog rows/s vs raw COPY", "catalog_share", ">=", 0.7),
    Target(
        "poll lag p99 <= interval + 1 s", "poll_lag_p99_ms", "<=", (POLL_INTERVAL + 1) * 1000, "ms"
    ),
    Target("no duplicate messages", "duplicates", "==", 0),
    Target("no message missing after the catalog", "missing", "==", 0),
    Target("no polled message lost", "lost", "==", 0),
    Target("no catalog error", "errors", "==", 0),
)


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=100, help="items per message page")
    parser.add_argument("--concurrency", type=int, default=8, help="plugin setting (1-32)")
    parser.add_argument("--changes", type=int, default=100, help="chats changed per interval")
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    parser.add_argument(
        "--rounds", type=int, default=4, help="catalog / raw COPY rounds, interleaved"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.messages, args.chats, args.changes, args.poll_seconds = 2000, 200, 10, 7.0
        args.rounds = 2
    args.per_chat = max(1, args.messages // args.chats)
    args.messages = args.per_chat * args.chats
    return args


class Unlimited:
    """A rate limiter that always allows: the catalog run measures the cataloger, not
    the per-account request budget (reported separately)."""

    async def acquire(self, key: str, *, rate: float, burst: int, cost: int = 1) -> Any:
        raise NotImplementedError("only reserve() is used by the ChatGuru client")

    async def reserve(
        self, key: str, *, rate: float, burst: int, cost: int = 1, max_wait: float
    ) -> Any:
        from guiche.ratelimit import Reservation

        return Reservation(True, 0.0, 0.0)


@dataclass
class Setup:
    services: Any
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    base: str
    headers: dict[str, str]


@contextlib.asynccontextmanager
async def guiche_app(database_url: str) -> AsyncIterator[tuple[Any, str]]:
    """Guichê's web app in this process (its services are what a worker task gets)."""
    from aiohttp import web

    from guiche.app import create_app
    from guiche.foundation.config import Settings
    from guiche.foundation.gc_tuning import tune_after_startup
    from guiche.runtime.services import SERVICES

    settings = Settings(
        database_url=database_url,
        redis_url=None,
        secret_key="bench-" + secrets.token_hex(24),
        encryption_keys=[Fernet.generate_key().decode()],
        log_json=False,
        rate_limit_per_minute=0,
    )
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    tune_after_startup(settings)  # as `guiche worker` does once started
    try:
        yield app[SERVICES], f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def connect(database_url: str, base: str, panel_url: str, services: Any, args: Any) -> Setup:
    """A company with the plugin enabled and a provisioned `chatguru` channel, via the API."""
    company = await create_company(database_url)
    async with aiohttp.ClientSession() as http:
        headers = await login(http, base, company)
        settings = {
            "poll_interval_seconds": POLL_INTERVAL,
            "concurrency": args.concurrency,
            "requests_per_second": POLL_RPS,
        }
        async with http.put(
            f"{base}/api/v1/plugins/chatguru",
            headers=headers,
            json={"enabled": True, "settings": settings},
        ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"enable chatguru: {resp.status} {await resp.text()}")
        credentials = {
            "panel_url": panel_url,
            "email": "ops@loja.example",
            "password": "s3nha-do-painel",
        }
        async with http.post(
            f"{base}/api/v1/channels",
            headers=headers,
            json={"type": "chatguru", "name": "ChatGuru", "credentials": credentials},
        ) as resp:
            body = await resp.json()
            if resp.status != 201 or body.get("state") != "provisioned":
                raise RuntimeError(f"chatguru channel: {resp.status} {body}")
    return Setup(services, company.tenant_id, uuid.UUID(body["id"]), base, headers)


async def enable_polling(setup: Setup, http: aiohttp.ClientSession) -> None:
    """What an operator does after the catalog (`POST …/polling/enable`)."""
    url = f"{setup.base}/api/v1/plugins/chatguru/accounts/{setup.channel_id}/polling/enable"
    async with http.post(url, headers=setup.headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"enable polling: {resp.status} {await resp.text()}")


async def fake_calls(http: aiohttp.ClientSession, panel_url: str) -> dict[str, int]:
    async with http.get(f"{panel_url}/_stats") as resp:
        return dict((await resp.json())["calls"])


# --- the catalog and its ceiling -----------------------------------------------------------


def round_bounds(chats: int, rounds: int) -> list[tuple[int, int]]:
    """Chat index ranges [lo, hi), one per round, covering every chat."""
    rounds = max(1, min(rounds, chats))
    cuts = [chats * k // rounds for k in range(rounds + 1)]
    return list(itertools.pairwise(cuts))


def chat_prefix(i: int) -> str:
    """The provider-id prefix of chat i's generated messages (`bench.fake_chatguru`)."""
    return f"{i:010x}"


async def show_chats(http: aiohttp.ClientSession, panel_url: str, chats: int | None) -> None:
    async with http.post(f"{panel_url}/_visible", json={"chats": chats}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"fake panel /_visible: {resp.status}")


async def catalog_round(setup: Setup) -> dict:
    """One job over the chats the panel lists now (the ones done are skipped), timed."""
    from guiche_chatguru.catalog import create_job, job_row, run_catalog

    services = setup.services
    real = services.limiter
    services.limiter = Unlimited()  # the cached adapter is rebuilt with it (see _current)
    try:
        job_id = await create_job(setup.tenant_id, setup.channel_id)
        began = time.perf_counter()
        await run_catalog(str(job_id), services)
        took = time.perf_counter() - began
    finally:
        services.limiter = real
    job = await job_row(setup.tenant_id, job_id)
    assert job is not None
    return {"seconds": took, "job": job}


async def copy_round(
    database_url: str, channel_id: uuid.UUID, lo: int, hi: int
) -> tuple[int, float]:
    """The ceiling of one round: chats lo .. hi-1's rows, read back (untimed) and COPYed
    with fresh ids in batches of `COPY_BATCH` into the `messages` twin, after a
    CHECKPOINT; only the COPY calls are timed. Answers the rows and their seconds."""
    from guiche.inbound.bulk import MESSAGE_COLUMNS

    columns = ", ".join(MESSAGE_COLUMNS)
    rows, seconds = 0, 0.0
    reader = await asyncpg.connect(database_url)
    writer = await asyncpg.connect(database_url)
    try:
        await writer.execute("CHECKPOINT")
        async with reader.transaction():
            cursor = await reader.cursor(
                f"SELECT {columns} FROM messages WHERE channel = $1"
                ' AND provider_message_id COLLATE "C" >= $2'
                ' AND provider_message_id COLLATE "C" < $3',
                channel_id,
                chat_prefix(lo),
                chat_prefix(hi),
            )
            while batch := await cursor.fetch(COPY_BATCH):
                records = [(uuid.uuid4(), *tuple(row)[1:]) for row in batch]
                began = time.perf_counter()
                await writer.copy_records_to_table(
                    COPY_TWIN, records=records, columns=MESSAGE_COLUMNS
                )
                seconds += time.perf_counter() - began
                rows += len(records)
    finally:
        await reader.close()
        await writer.close()
    return rows, seconds


async def catalog_and_ceiling(
    setup: Setup, database_url: str, http: aiohttp.ClientSession, panel_url: str, args: Any
) -> tuple[dict, dict]:
    """The catalog in `--rounds` rounds, each followed by the raw COPY of its rows: the
    host's speed drifts over minutes, and interleaving puts both sides in the same
    periods. Each round's job lists the chats shown so far and skips those done, as a
    resumed catalog does. The ceiling's twin of `messages` (`LIKE … INCLUDING ALL` + its
    foreign keys) grows round by round as `messages` does."""
    from bench.history import scratch_like

    conn = await asyncpg.connect(database_url)
    try:
        await scratch_like(conn, "messages", COPY_TWIN)
    finally:
        await conn.close()
    before = await fake_calls(http, panel_url)
    seconds, jobs, shares = 0.0, [], []
    ceiling = {"rows": 0, "seconds": 0.0}
    try:
        for lo, hi in round_bounds(args.chats, args.rounds):
            await show_chats(http, panel_url, hi)
            await fetchval(database_url, "CHECKPOINT")  # as before each round's COPY
            done = await catalog_round(setup)
            seconds += done["seconds"]
            jobs.append(done["job"])
            rows, copied = await copy_round(database_url, setup.channel_id, lo, hi)
            ceiling["rows"] += rows
            ceiling["seconds"] += copied
            stored = done["job"]["inserted"] + done["job"]["duplicates"]
            shares.append(ratio(per_second(stored, done["seconds"]), per_second(rows, copied)))
    finally:
        await show_chats(http, panel_url, None)
    after = await fake_calls(http, panel_url)
    total = {
        key: sum(job[key] for job in jobs) for key in ("inserted", "duplicates", "errors", "odd")
    }
    failed = [job for job in jobs if job["state"] != "done"]
    reported = failed[0] if failed else jobs[-1]  # the first failure, else the last job
    return {
        "seconds": seconds,
        "rounds": len(jobs),
        "round_shares": shares,
        "state": reported["state"],
        "error": reported["error"],
        "chats_done": jobs[-1]["chats_done"],
        "failed_rounds": len(failed),
        "requests": sum(after.values()) - sum(before.values()),
        **total,
    }, ceiling


# --- poll lag ------------------------------------------------------------------------------


async def poll_phase(
    setup: Setup, database_url: str, http: aiohttp.ClientSession, panel_url: str, args: Any
) -> dict:
    """Messages added upstream every interval; the poller (poll_due each second) brings
    them in; each one's lag is when its row is first seen here − when it was added."""
    from guiche_chatguru.poller import poll_due

    services = setup.services
    added: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = asyncio.Event()
    fired: set[asyncio.Task[int]] = set()
    conn = await asyncpg.connect(database_url)
    await enable_polling(setup, http)

    async def scheduler() -> None:
        while not stop.is_set():
            task = asyncio.create_task(poll_due(services))
            fired.add(task)
            task.add_done_callback(fired.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def watch() -> None:
        while not stop.is_set():
            waiting = [oid for oid in added if oid not in seen]
            if waiting:
                # message_keys, not messages: its key is (channel, provider id), and a
                # message commits with its key (`messages` has no index on the provider
                # id: this watcher would scan a million rows every 50 ms)
                rows = await conn.fetch(
                    "SELECT provider_message_id FROM message_keys WHERE channel = $1"
                    " AND provider_message_id = ANY($2::varchar[])",
                    setup.channel_id,
                    waiting,
                )
                now = time.time()
                for row in rows:
                    seen.setdefault(row["provider_message_id"], now)
            await asyncio.sleep(WATCH_EVERY)

    async def upstream() -> None:
        phase = random.Random(16)
        began = time.monotonic()
        tick = 0
        while time.monotonic() - began < args.poll_seconds:
            async with http.post(f"{panel_url}/_add", json={"count": args.changes}) as resp:
                for oid, at in (await resp.json())["added"]:
                    added[oid] = at
            tick += 1
            # a random phase per interval: additions locked to the poller's schedule
            # would show a lag that only measures the phase
            due = began + (tick + phase.random()) * POLL_INTERVAL
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        deadline = time.monotonic() + LOST_AFTER
        while len(seen) < len(added) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # `seen` is filled by watch(): polling it is simplest
        stop.set()

    try:
        await asyncio.gather(scheduler(), watch(), upstream())
        if fired:
            await asyncio.gather(*fired, return_exceptions=True)
        account = await conn.fetchrow(
            "SELECT polls, poll_errors, last_poll_error FROM chatguru_accounts WHERE id = $1",
            setup.channel_id,
        )
    finally:
        await conn.close()
    lags = [seen[oid] - at for oid, at in added.items() if oid in seen]
    return {"added": len(added), "stored": len(seen), "lags": lags, "account": dict(account)}


# --- the benchmark -------------------------------------------------------------------------


async def measure(args: Any) -> dict[str, Any]:
    from guiche_chatguru.config import ALLOW_ANY_HOST_ENV

    os.environ[ALLOW_ANY_HOST_ENV] = "1"  # the fake panel is http://127.0.0.1
    port = free_port()
    panel_url = f"http://127.0.0.1:{port}"
    fake_argv = python_module(
        "bench.fake_chatguru",
        "--port",
        str(port),
        "--chats",
        str(args.chats),
        "--per-chat",
        str(args.per_chat),
        "--page-size",
        str(args.page_size),
    )
    figures: dict[str, Any] = {}
    ceiling: dict[str, Any] = {}
    async with (
        bench_database(args.server_url) as database_url,
        running("fake-chatguru", fake_argv, ready_url=f"{panel_url}/_stats"),
        guiche_app(database_url) as (services, base),
        aiohttp.ClientSession() as http,
    ):
        environment = await environment_facts(database_url, None)
        setup = await connect(database_url, base, panel_url, services, args)
        cat, copy = await catalog_and_ceiling(setup, database_url, http, panel_url, args)
        counts = await fetchrow(
            database_url,
            "SELECT count(*) AS rows, count(DISTINCT provider_message_id) AS ids"
            " FROM messages WHERE channel = $1",
            setup.channel_id,
        )
        figures.update(
            catalog_state=cat["state"],
            catalog_error=cat["error"],
            catalog_rounds=cat["rounds"],
            catalog_round_shares=cat["round_shares"],
            catalog_seconds=round(cat["seconds"], 3),
            catalog_rows_per_second=per_second(counts["ids"], cat["seconds"]),
            catalog_messages_expected=args.messages,
            catalog_messages_stored=counts["ids"],
            catalog_job_inserted=cat["inserted"],
            catalog_job_duplicates_skipped=cat["duplicates"],
            catalog_chats=cat["chats_done"],
            catalog_requests=cat["requests"],
            rate_bound_messages_per_second=per_second(counts["ids"] * POLL_RPS, cat["requests"]),
            duplicates=counts["rows"] - counts["ids"],
            missing=args.messages - counts["ids"],
            errors=cat["errors"] + cat["odd"] + cat["failed_rounds"],
        )
        ceiling.update(
            catalog_rows_per_second=per_second(copy["rows"], copy["seconds"]),
            copy_rows=copy["rows"],
            copy_seconds=round(copy["seconds"], 3),
        )
        poll = await poll_phase(setup, database_url, http, panel_url, args)
        lag = latency_ms(poll["lags"])
        figures.update(
            poll_added=poll["added"],
            poll_stored=poll["stored"],
            poll_lag_p50_ms=lag["p50_ms"],
            poll_lag_p99_ms=lag["p99_ms"],
            poll_lag_max_ms=lag["max_ms"],
            poll_polls=poll["account"]["polls"],
            poll_errors=poll["account"]["poll_errors"],
            poll_last_error=poll["account"]["last_poll_error"],
            lost=poll["added"] - poll["stored"],
        )
        after = await fetchrow(
            database_url,
            "SELECT count(*) AS rows, count(DISTINCT provider_message_id) AS ids"
            " FROM messages WHERE channel = $1",
            setup.channel_id,
        )
        figures["duplicates"] += (after["rows"] - after["ids"]) - (counts["rows"] - counts["ids"])
    ratios = {
        "catalog_share": ratio(
            figures["catalog_rows_per_second"], ceiling["catalog_rows_per_second"]
        )
    }
    notes = [
        "catalog: create_job + run_catalog in this process (a worker's task body), with the"
        " per-account rate bucket lifted; rate_bound_messages_per_second is what the"
        " plugin's maximum of 100 requests/s would allow with these pages",
        f"catalog and ceiling in {args.rounds} interleaved rounds (the panel shows a larger"
        " part of the chats each round; each round's job skips the chats done): the host's"
        " speed drifts over minutes, and both sides are then measured in the same periods",
        "ceiling: each round's rows read back and COPYed (fresh ids) into one twin of"
        " messages after a CHECKPOINT (so is each catalog round); only the COPY calls are"
        " timed",
        f"poll: interval {POLL_INTERVAL:g} s (the plugin's minimum), {POLL_RPS:g} requests/s"
        " with the real limiter, poll_due fired every second; lag = first seen stored (its"
        " message_keys row)"
        f" (checked every {WATCH_EVERY * 1000:.0f} ms) - added upstream",
        "the fake panel runs in its own process; Guichê, Postgres and the fake share the CPUs",
    ]
    return make_report(
        "chatguru",
        parameters={
            "messages": args.messages,
            "chats": args.chats,
            "per_chat": args.per_chat,
            "page_size": args.page_size,
            "concurrency": args.concurrency,
            "changes_per_interval": args.changes,
            "poll_interval_seconds": POLL_INTERVAL,
            "poll_seconds": args.poll_seconds,
            "rounds": args.rounds,
            "smoke": args.smoke,
        },
        figures={**figures, **ratios},
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
            "catalog rows/s",
            f.get("catalog_rows_per_second"),
            c.get("catalog_rows_per_second"),
            report["ratio"].get("catalog_share"),
        ),
        ("catalog seconds", f.get("catalog_seconds"), c.get("copy_seconds"), None),
        (
            "messages stored / expected",
            f"{f.get('catalog_messages_stored')} / {f.get('catalog_messages_expected')}",
            None,
            None,
        ),
        ("poll lag p50 ms", f.get("poll_lag_p50_ms"), None, None),
        ("poll lag p99 ms", f.get("poll_lag_p99_ms"), None, None),
        ("poll lag max ms", f.get("poll_lag_max_ms"), None, None),
        ("polled added / stored", f"{f.get('poll_added')} / {f.get('poll_stored')}", None, None),
    ]
    return format_table(("figure", "guiche", "raw COPY", "ratio"), rows)


def main(argv: list[str] | None = None) -> None:
    run_benchmark(measure, table, parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
