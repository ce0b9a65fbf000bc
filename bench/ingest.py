"""ingest: signed Meta webhooks into a real `guiche web` on Postgres and Redis.

A load generator in its own process (`bench.loadgen`: aiohttp, keep-alive, concurrency
64) posts webhooks of 1 and of 20 text messages, each message with its own wamid and
phone. The figure is messages persisted per second, counted in the database afterwards
(never taken from the acknowledgements), with the ack latency the generator saw. The
same webhooks sent again must add no rows. Two ceilings run under the same generator:
`bench.bare_ingest` (one asyncpg INSERT per request into a table of its own, no
framework) and `bench.same_writes_ingest` (a bare app writing exactly the rows Guichê
writes, into Guichê's tables, for another company's channel): Guichê's share of the
second is its own overhead, the second's share of the first the data model's cost.

    python -m bench.ingest [--requests 10000] [--batch 20] [--batch-requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from bench.bare_ingest import TABLE as CEILING_TABLE
from bench.common import (
    MetaChannel,
    Process,
    Stack,
    Target,
    base_parser,
    create_company,
    create_meta_channel,
    environment_facts,
    fetchval,
    format_table,
    free_port,
    guiche_command,
    guiche_stack,
    login,
    make_report,
    per_second,
    profile_table,
    py_spy,
    python_module,
    ratio,
    run_benchmark,
    run_json,
    running,
    unmet,
    wants_profile,
)

WEEK = 7 * 24 * 3600
ACROSS_WEEK_SPAN = 600

TARGETS = (
    Target("ingest 1 msg/request: persisted messages/s", "messages_per_second_1", ">=", 2000, "/s"),
    Target("ingest 1 msg/request: ack p99", "ack_p99_ms_1", "<=", 50, "ms"),
    Target("ingest 1 msg/request: share of bare ceiling", "ceiling_share_1", ">=", 0.70),
    Target("ingest 1 msg/request: share of same-writes ceiling", "same_writes_share_1", ">=", 0.80),
    Target(
        "ingest 20 msg/request: persisted messages/s", "messages_per_second_20", ">=", 10000, "/s"
    ),
    Target("duplicates: rows added", "duplicate_rows_added", "==", 0, "rows"),
)


class Sink:
    """Where a load run lands: the webhook URL and how to count what it stored."""

    def __init__(
        self, url: str | Sequence[str], database_url: str, table: str, channel: MetaChannel
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        self.database_url = database_url
        self.table = table
        self.channel = channel

    async def count(self, run: str) -> int:
        sql = (
            f"SELECT count(*) FROM {self.table} WHERE channel = $1 AND provider_message_id LIKE $2"
        )
        return int(await fetchval(self.database_url, sql, self.channel.id, f"wamid.bench.{run}.%"))


async def post(
    sink: Sink,
    *,
    run: str,
    requests: int,
    batch: int,
    concurrency: int,
    timestamp: int,
    customers: int | None = None,
    span: int = 0,
) -> dict[str, Any]:
    """One load-generator process against `sink`; its JSON result. With `span`, the
    requests' timestamps run evenly over `span` seconds from `timestamp`."""
    extra = ["--customers", str(customers)] if customers else []
    for url in sink.urls[1:]:
        extra += ["--url", url]
    if span:
        extra += ["--timestamp-step", str(span / requests)]
    return await run_json(
        python_module(
            "bench.loadgen",
            "--url",
            sink.urls[0],
            "--phone-number-id",
            sink.channel.phone_number_id,
            "--app-secret",
            sink.channel.app_secret,
            "--requests",
            str(requests),
            "--batch",
            str(batch),
            "--concurrency",
            str(concurrency),
            "--run",
            run,
            "--timestamp",
            str(timestamp),
            *extra,
        )
    )


async def measured(sink: Sink, *, run: str, **load: Any) -> dict[str, Any]:
    """A load run plus the rows it left: persisted messages/s from the database count."""
    result = await post(sink, run=run, **load)
    stored = await sink.count(run)
    result["persisted_messages"] = stored
    result["persisted_messages_per_second"] = per_second(stored, result["elapsed_s"])
    return result


async def profile_under_load(
    process: Process, sink: Sink, *, seconds: float, rate: float, **load: Any
) -> dict[str, Any]:
    """py-spy the server while a fresh load (sized to outlast the sampling) is on."""
    requests = max(100, int(rate * (seconds + 3)))
    load_task = asyncio.create_task(
        post(sink, run=f"profile{secrets.token_hex(3)}", requests=requests, **load)
    )
    await asyncio.sleep(1.0)
    profile = await py_spy(process.pid, seconds)
    await load_task
    return profile.as_dict() | {"table": profile_table(profile)}


async def scale_out(
    stack: Stack, tag: str, warmup: dict[str, Any], load: dict[str, Any]
) -> dict[str, Any]:
    """The 1-message load again, round robin over this `guiche web` and a second one on
    the same database and Redis: what adding a process buys on this machine."""
    port = free_port()
    second = f"http://127.0.0.1:{port}"
    env = {**stack.env, "GUICHE_PORT": str(port)}
    argv = [*guiche_command(), "web"]
    async with running("guiche-web-2", argv, env, ready_url=f"{second}/health"):
        path = stack.channel.webhook_path
        urls = [stack.web_url + path, second + path]
        both = Sink(urls, stack.database_url, "messages", stack.channel)
        if warmup["requests"]:
            await post(both, run=f"warmtwo{tag}", **warmup)
        return await measured(both, run=f"two{tag}", **load)


def across_week(now: int, weeks_ago: int) -> dict[str, int]:
    """Timestamps over the 10 minutes around a 7-day boundary (TimescaleDB's chunks
    start on multiples of 7 days from the Unix epoch): a fresh database has no chunk for
    either week, so the run creates two under load, one in its middle."""
    boundary = (now // WEEK - weeks_ago) * WEEK
    return {"timestamp": boundary - ACROSS_WEEK_SPAN // 2, "span": ACROSS_WEEK_SPAN}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    timestamp = int(time.time())
    common = {"concurrency": args.concurrency, "timestamp": timestamp}

    def dated(weeks_ago: int) -> dict[str, int]:
        return across_week(timestamp, weeks_ago) if args.across_week else {}

    one = {"requests": args.requests, "batch": 1, **common, **dated(2)}
    many = {"requests": args.batch_requests, "batch": args.batch, **common, **dated(4)}
    warmup = {"requests": args.warmup, "batch": 1, **common}
    runs: dict[str, Any] = {}
    async with guiche_stack(args.server_url, args.redis_url, log_level=args.log_level) as stack:
        environment = await environment_facts(stack.database_url, stack.redis_url)
        guiche = Sink(
            stack.web_url + stack.channel.webhook_path,
            stack.database_url,
            "messages",
            stack.channel,
        )
        if args.warmup:
            await post(guiche, run=f"warm{tag}", **warmup)
        runs["guiche_1"] = await measured(guiche, run=f"one{tag}", **one)
        runs["guiche_20"] = await measured(guiche, run=f"many{tag}", **many)
        # Returning customers: the phones of the first run's first messages, whose
        # conversations that run opened (the common case in production; not a target).
        runs["guiche_open"] = await measured(
            guiche,
            run=f"open{tag}",
            customers=min(args.customers, args.requests),
            **(one | dated(6)),
        )
        before = await guiche.count(f"one{tag}")
        runs["duplicates"] = await post(guiche, run=f"one{tag}", **one)
        runs["duplicates"]["rows_added"] = await guiche.count(f"one{tag}") - before
        if args.scale_out:
            runs["two_1"] = await scale_out(stack, tag, warmup, one | dated(8))

        # Another company's channel: its contacts and conversations are new to it too.
        async with aiohttp.ClientSession() as session:
            other = await create_company(stack.database_url)
            other_channel = await create_meta_channel(
                session,
                stack.web_url,
                await login(session, stack.web_url, other),
                graph_base_url=stack.graph_url,
            )
        port = free_port()
        same_argv = python_module(
            "bench.same_writes_ingest", "--port", str(port), "--database-url", stack.database_url
        )
        async with running("same-writes", same_argv, ready_url=f"http://127.0.0.1:{port}/health"):
            same = Sink(
                f"http://127.0.0.1:{port}{other_channel.webhook_path}",
                stack.database_url,
                "messages",
                other_channel,
            )
            if args.warmup:
                await post(same, run=f"warm{tag}", **warmup)
            runs["same_1"] = await measured(same, run=f"one{tag}", **one)
            runs["same_20"] = await measured(same, run=f"many{tag}", **many)

        port = free_port()
        bare_argv = python_module(
            "bench.bare_ingest", "--port", str(port), "--database-url", stack.database_url
        )
        async with running("bare-ingest", bare_argv, ready_url=f"http://127.0.0.1:{port}/health"):
            bare = Sink(
                f"http://127.0.0.1:{port}{stack.channel.webhook_path}",
                stack.database_url,
                CEILING_TABLE,
                stack.channel,
            )
            if args.warmup:
                await post(bare, run=f"warm{tag}", **warmup)
            runs["ceiling_1"] = await measured(bare, run=f"one{tag}", **one)
            runs["ceiling_20"] = await measured(bare, run=f"many{tag}", **many)

        report = build_report(args, runs, environment)
        if wants_profile(args.profile, bool(unmet(report))):
            rate = max(runs["guiche_1"]["requests_per_second"], 1.0)
            report["profile"] = await profile_under_load(
                stack.web, guiche, seconds=args.profile_seconds, rate=rate, batch=1, **common
            )
    return report


def build_report(
    args: argparse.Namespace, runs: dict[str, Any], environment: dict[str, Any]
) -> dict[str, Any]:
    def figures_of(prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for size in ("1", "20"):
            run = runs[f"{prefix}_{size}"]
            out[f"messages_per_second_{size}"] = run["persisted_messages_per_second"]
            out[f"persisted_messages_{size}"] = run["persisted_messages"]
            out[f"ack_p50_ms_{size}"] = run["latency"]["p50_ms"]
            out[f"ack_p99_ms_{size}"] = run["latency"]["p99_ms"]
            out[f"errors_{size}"] = run["errors"]
        return out

    figures = figures_of("guiche") | {
        "messages_per_second_open": runs["guiche_open"]["persisted_messages_per_second"],
        "ack_p99_ms_open": runs["guiche_open"]["latency"]["p99_ms"],
        "errors_open": runs["guiche_open"]["errors"],
        "duplicate_rows_added": runs["duplicates"]["rows_added"],
        "duplicate_errors": runs["duplicates"]["errors"],
        "duplicate_ack_p99_ms": runs["duplicates"]["latency"]["p99_ms"],
    }
    ceiling = figures_of("ceiling")
    same = figures_of("same")
    ceiling |= {f"same_writes_{key}": value for key, value in same.items()}
    ratios = {
        f"ceiling_share_{size}": ratio(
            figures[f"messages_per_second_{size}"], ceiling[f"messages_per_second_{size}"]
        )
        for size in ("1", "20")
    }
    for size in ("1", "20"):
        ratios[f"same_writes_share_{size}"] = ratio(
            figures[f"messages_per_second_{size}"], same[f"messages_per_second_{size}"]
        )
        ratios[f"data_model_share_{size}"] = ratio(
            same[f"messages_per_second_{size}"], ceiling[f"messages_per_second_{size}"]
        )
    if "two_1" in runs:
        two = runs["two_1"]
        figures["messages_per_second_1_two_processes"] = two["persisted_messages_per_second"]
        figures["ack_p99_ms_1_two_processes"] = two["latency"]["p99_ms"]
        figures["errors_1_two_processes"] = two["errors"]
        ratios["scale_out_ratio_1"] = ratio(
            figures["messages_per_second_1_two_processes"], figures["messages_per_second_1"]
        )
        ratios["ceiling_share_1_two_processes"] = ratio(
            figures["messages_per_second_1_two_processes"], ceiling["messages_per_second_1"]
        )
    ratios["open_conversation_share_1"] = ratio(
        figures["messages_per_second_open"], ceiling["messages_per_second_1"]
    )
    parameters = {
        "across_week": args.across_week,
        "scale_out": args.scale_out,
        "returning_customers": min(args.customers, args.requests),
        "requests_1_per_request": args.requests,
        "requests_batched": args.batch_requests,
        "messages_per_batched_request": args.batch,
        "concurrency": args.concurrency,
        "warmup_requests": args.warmup,
        "smoke": args.smoke,
        "guiche_log_level": args.log_level,
        "server": "guiche web (1 process), Postgres + Redis, GUICHE_DB_POOL_MAX default",
        "ceiling": "bench.bare_ingest: aiohttp + one asyncpg INSERT per request, pool of 10",
        "same_writes_ceiling": "bench.same_writes_ingest: aiohttp + one hand-written statement"
        " writing Guichê's rows (key, contact, conversation, message, 2 events), pool of 10",
        "load_generator": "bench.loadgen: own process, aiohttp keep-alive, closed loop",
    }
    notes = [
        "messages/s = rows counted in the database / load-generator wall time",
        "each message comes from a new phone: every one opens a contact and a conversation",
        "messages_per_second_open: 1-message webhooks from returning customers, into their"
        " open conversations (the usual case in production; reported, not a target)",
        "load generator, server, Postgres and Redis share this machine's CPUs",
    ]
    report = make_report(
        "ingest",
        parameters=parameters,
        figures=figures,
        ceiling=ceiling,
        ratios=ratios,
        targets=TARGETS,
        environment=environment,
        notes=notes,
    )
    report["runs"] = runs
    return report


def table(report: dict[str, Any]) -> str:
    f, c, r = report["figures"], report["ceiling"], report["ratio"]
    rows: list[Sequence[Any]] = [
        (
            f"{size} msg/request",
            f[f"messages_per_second_{size}"],
            c[f"messages_per_second_{size}"],
            r[f"ceiling_share_{size}"],
            f[f"ack_p50_ms_{size}"],
            f[f"ack_p99_ms_{size}"],
            f[f"errors_{size}"],
        )
        for size in ("1", "20")
    ]
    rows += [
        (
            f"{size} msg, same-writes",
            c[f"same_writes_messages_per_second_{size}"],
            c[f"messages_per_second_{size}"],
            r[f"data_model_share_{size}"],
            c[f"same_writes_ack_p50_ms_{size}"],
            c[f"same_writes_ack_p99_ms_{size}"],
            c[f"same_writes_errors_{size}"],
        )
        for size in ("1", "20")
    ]
    rows.append(
        (
            "1 msg, open conv.",
            f["messages_per_second_open"],
            c["messages_per_second_1"],
            r["open_conversation_share_1"],
            "-",
            f["ack_p99_ms_open"],
            f["errors_open"],
        )
    )
    if "scale_out_ratio_1" in r:
        rows.append(
            (
                "1 msg, two web procs",
                f["messages_per_second_1_two_processes"],
                c["messages_per_second_1"],
                r["ceiling_share_1_two_processes"],
                "-",
                f["ack_p99_ms_1_two_processes"],
                f["errors_1_two_processes"],
            )
        )
    rows.append(
        ("duplicates resent", "-", "-", "-", "-", f["duplicate_ack_p99_ms"], f["duplicate_errors"])
    )
    text = format_table(
        ("case", "guiche msg/s", "bare msg/s", "share", "ack p50 ms", "ack p99 ms", "errors"),
        rows,
    )
    text += f"\nduplicates: {f['duplicate_rows_added']} rows added"
    text += (
        f"\nGuichê's share of the same-writes ceiling: {r['same_writes_share_1']} (1 msg),"
        f" {r['same_writes_share_20']} (20 msg)"
        + (
            f"\ntwo `guiche web` processes: {r['scale_out_ratio_1']}× one (1 msg/request)"
            if "scale_out_ratio_1" in r
            else ""
        )
    )
    if "profile" in report:
        text += "\n\n" + report["profile"]["table"]
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__ or "ingest benchmark")
    parser.add_argument("--requests", type=int, help="webhooks of 1 message (default 5000)")
    parser.add_argument("--batch", type=int, default=20, help="messages per batched webhook")
    parser.add_argument("--batch-requests", type=int, help="batched webhooks (default 500)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, help="unmeasured webhooks first (default 300)")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument(
        "--across-week",
        action="store_true",
        help="date each measured run's messages across a week boundary (new chunks under load)",
    )
    parser.add_argument(
        "--customers", type=int, default=1000, help="returning customers (open-conversation run)"
    )
    parser.add_argument(
        "--no-scale-out",
        dest="scale_out",
        action="store_false",
        help="skip the run over two `guiche web` processes",
    )
    args = parser.parse_args(argv)
    small = args.smoke
    args.requests = args.requests or (20 if small else 5_000)
    args.batch_requests = args.batch_requests or (3 if small else 500)
    args.warmup = args.warmup if args.warmup is not None else (0 if small else 300)
    if small:
        args.concurrency = min(args.concurrency, 4)
        args.profile_seconds = min(args.profile_seconds, 1.0)
        args.profile = "never" if args.profile == "auto" else args.profile
    return args


def main(argv: Sequence[str] | None = None) -> None:
    run_benchmark(bench, table, parse_args(argv))


if __name__ == "__main__":
    main()
