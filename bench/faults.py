"""faults: no message lost or sent twice while the worker, Redis and Postgres fall over.

Issue 12's end-to-end check. The run starts its OWN PostgreSQL and Redis
(`bench.servers`: the machine's are never restarted), real `guiche web`, `guiche worker`
and `guiche scheduler` processes, and the fake Graph API (`bench.fake_graph`, answering
each send after `--graph-delay-ms`, far inside the send timeout). For `--duration`
seconds it paces N signed inbound webhooks and M outbound sends through the REST API at
once, retrying what was not acknowledged as Meta and a careful client do (the sends
carry an `Idempotency-Key`), while it injects, at fixed fractions of the run: kill -9
of the worker (a new one starts at once), a Redis restart (its queue is lost), and
PostgreSQL restarts (`pg_ctl restart -m fast`, then `-m immediate`). Then it waits for
every send to settle (the sweeper re-kicks what the faults dropped) and counts:

- inbound: lost = acknowledged (200) but not stored; duplicates = a wamid stored twice;
- outbound: duplicates = a message id the provider received more than once; lost =
  accepted (202), never received and not visibly `failed`/`unknown` (a message still
  `pending` at the end counts as lost); plus how many ended `unknown`/`failed`, why,
  and whether the provider had them.

Exits 1 when anything was lost or duplicated. Throughput figures mean little here.

    python -m bench.faults [--inbound 3000] [--outbound 1500] [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.common import (
    Process,
    Stack,
    Target,
    base_parser,
    bench_lock,
    emit,
    environment_facts,
    format_table,
    guiche_command,
    guiche_stack,
    inbound_texts,
    make_report,
    meta_signature,
    meta_text_webhook,
    per_second,
    wait_until,
)
from bench.send import open_conversations
from bench.servers import PrivatePostgres, PrivateRedis, private_postgres, private_redis

TARGETS = (
    Target("faults: inbound acknowledged but not stored", "inbound_lost", "==", 0),
    Target("faults: inbound stored twice", "inbound_duplicates", "==", 0),
    Target("faults: outbound received twice by the provider", "outbound_duplicates", "==", 0),
    Target("faults: outbound accepted, never sent, not failed/unknown", "outbound_lost", "==", 0),
)
MUST_BE_ZERO = ("inbound_lost", "inbound_duplicates", "outbound_duplicates", "outbound_lost")

SEND_TIMEOUT_SECONDS = 5.0
"""The worker's send timeout here: the lease is this plus 30 s, so a killed worker's
claims come back within the run's wait rather than after the default 90 s."""


@dataclass
class Tally:
    """What one side of the load saw: per item, acknowledged or not, and why not."""

    acked: dict[int, Any] = field(default_factory=dict)
    attempts: int = 0
    retried: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    rejected: dict[int, str] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)

    def as_dict(self, total: int, seconds: float) -> dict[str, Any]:
        return {
            "total": total,
            "acked": len(self.acked),
            "acked_per_second": per_second(len(self.acked), seconds),
            "attempts": self.attempts,
            "retried": self.retried,
            "errors_by_kind": dict(self.errors),
            "rejected": len(self.rejected),
            "rejected_examples": list(self.rejected.values())[:5],
            "server_error_examples": self.server_errors[:5],
            "gave_up": len(self.gave_up),
        }


async def paced(
    count: int,
    rate: float,
    concurrency: int,
    attempt: Callable[[int], Awaitable[bool]],
    *,
    retry_for: float,
    tally: Tally,
) -> None:
    """Call `attempt(i)` for i in 0..count-1 at `rate`/s, retrying each until it is
    acknowledged (True), for at most `retry_for` seconds (0.25 s → 2 s backoff)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    started = time.monotonic()

    async def worker() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            first, pause = time.monotonic(), 0.25
            while True:
                tally.attempts += 1
                if await attempt(index):
                    break
                if index in tally.rejected:  # a 4xx: retrying will not help
                    break
                if time.monotonic() - first > retry_for:
                    tally.gave_up.append(index)
                    break
                tally.retried += 1
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def post_once(
    session: aiohttp.ClientSession,
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    tally: Tally,
    index: int,
) -> tuple[int, bytes] | None:
    """One POST; (status, body), or None after a connection error (counted)."""
    try:
        async with session.post(url, data=body, headers=headers) as response:
            payload = await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        tally.errors[type(exc).__name__] += 1
        return None
    if response.status >= 500 or response.status == 429:
        tally.errors[f"http_{response.status}"] += 1
        if response.status != 503:
            tally.server_errors.append(
                f"{response.status}: {payload[:300].decode(errors='replace')}"
            )
    elif response.status >= 300:
        tally.errors[f"http_{response.status}"] += 1
        tally.rejected[index] = f"{response.status}: {payload[:300].decode(errors='replace')}"
    return response.status, payload


async def drive_inbound(
    session: aiohttp.ClientSession, stack: Stack, run: str, args: argparse.Namespace
) -> Tally:
    """N webhooks of one text each, each from its own customer, paced over the run."""
    tally = Tally()
    url = stack.web_url + stack.channel.webhook_path
    texts = inbound_texts(args.inbound, run=run)
    bodies = [meta_text_webhook(stack.channel.phone_number_id, [text]) for text in texts]

    async def attempt(index: int) -> bool:
        body = bodies[index]
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(body, stack.channel.app_secret),
        }
        answer = await post_once(session, url, body=body, headers=headers, tally=tally, index=index)
        if answer is None or answer[0] != 200:
            return False
        tally.acked[index] = texts[index].wamid
        return True

    await paced(
        args.inbound,
        args.inbound / args.duration,
        args.concurrency,
        attempt,
        retry_for=args.retry_for,
        tally=tally,
    )
    return tally


async def drive_outbound(
    session: aiohttp.ClientSession,
    stack: Stack,
    conversations: Sequence[uuid.UUID],
    run: str,
    args: argparse.Namespace,
) -> Tally:
    """M texts through `POST .../messages`, each with its own Idempotency-Key, so a retry
    after an unanswered request returns the first answer instead of a second message."""
    tally = Tally()

    async def attempt(index: int) -> bool:
        conversation = conversations[index % len(conversations)]
        url = f"{stack.web_url}/api/v1/conversations/{conversation}/messages"
        headers = {
            **stack.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": f"faults-{run}-{index}",
        }
        body = orjson.dumps({"type": "text", "text": f"faults {run} {index}: seu pedido saiu."})
        answer = await post_once(session, url, body=body, headers=headers, tally=tally, index=index)
        if answer is None or answer[0] not in (200, 201, 202):
            return False
        message_id = str(orjson.loads(answer[1])["id"])
        earlier = tally.acked.setdefault(index, message_id)
        if earlier != message_id:
            tally.errors["idempotent_retry_answered_another_id"] += 1
        return True

    await paced(
        args.outbound,
        args.outbound / args.duration,
        args.concurrency,
        attempt,
        retry_for=args.retry_for,
        tally=tally,
    )
    return tally


# --- the faults ------------------------------------------------------------------------


@dataclass
class Workers:
    """The current `guiche worker` (killed and replaced) and the scheduler."""

    env: dict[str, str]
    current: Process | None = None
    all: list[Process] = field(default_factory=list)

    def start(self) -> Process:
        process = Process("guiche-worker", [*guiche_command(), "worker"], self.env).start()
        self.current = process
        self.all.append(process)
        return process

    async def kill_and_restart(self) -> float:
        began = time.monotonic()
        assert self.current is not None and self.current.popen is not None
        self.current.popen.kill()  # SIGKILL: no graceful drain, claims stay leased
        await asyncio.to_thread(self.current.popen.wait)
        self.start()
        return time.monotonic() - began

    async def stop(self) -> None:
        for process in self.all:
            await process.stop()

    def cleanup(self) -> None:
        for process in self.all:
            process.cleanup()


def schedule(args: argparse.Namespace) -> list[tuple[float, str]]:
    """(fraction of the run, fault) in order."""
    faults = [
        (0.2, "kill -9 worker"),
        (0.4, "redis restart"),
        (0.55, "postgres restart -m fast"),
        (0.7, "kill -9 worker"),
        (0.85, "postgres restart -m immediate"),
    ]
    return [] if args.no_faults else faults


async def inject(
    plan: Sequence[tuple[float, str]],
    duration: float,
    workers: Workers,
    postgres: PrivatePostgres,
    redis: PrivateRedis,
) -> list[dict[str, Any]]:
    began = time.monotonic()
    done = []
    for fraction, fault in plan:
        await asyncio.sleep(max(0.0, began + fraction * duration - time.monotonic()))
        at = time.monotonic() - began
        if fault == "kill -9 worker":
            took = await workers.kill_and_restart()
        elif fault == "redis restart":
            took = await redis.restart()
        else:
            took = await postgres.restart(fault.rsplit(" ", 1)[-1])
        done.append({"fault": fault, "at_s": round(at, 2), "down_s": round(took, 2)})
    return done


# --- counting ----------------------------------------------------------------------------


async def inbound_stored(stack: Stack, run: str) -> collections.Counter[str]:
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch(
            "SELECT provider_message_id AS wamid, count(*) AS n FROM messages "
            "WHERE channel = $1 AND direction = 'in' AND provider_message_id LIKE $2 "
            "GROUP BY provider_message_id",
            stack.channel.id,
            f"wamid.bench.{run}.%",
        )
    finally:
        await conn.close()
    return collections.Counter({row["wamid"]: row["n"] for row in rows})


async def outbound_rows(stack: Stack, run: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(stack.database_url)
    try:
        return await conn.fetch(
            "SELECT id::text AS id, status, error, body FROM messages "
            "WHERE channel = $1 AND direction = 'out' AND body LIKE $2",
            stack.channel.id,
            f"faults {run} %",
        )
    finally:
        await conn.close()


async def provider_received(stack: Stack) -> collections.Counter[str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.graph_url}/_received") as response:
            return collections.Counter((await response.json())["counts"])


def count_inbound(tally: Tally, stored: collections.Counter[str]) -> dict[str, Any]:
    acked = set(tally.acked.values())
    return {
        "acked": len(acked),
        "stored": len(stored),
        "lost": len(acked - set(stored)),
        "lost_examples": sorted(acked - set(stored))[:5],
        "duplicates": sum(1 for n in stored.values() if n > 1),
        "stored_not_acked": len(set(stored) - acked),
    }


def count_outbound(
    tally: Tally, rows: Sequence[asyncpg.Record], received: collections.Counter[str]
) -> dict[str, Any]:
    accepted = set(tally.acked.values())
    by_id = {row["id"]: row for row in rows}
    per_body = collections.Counter(row["body"] for row in rows)
    statuses = collections.Counter(row["status"] for row in rows if row["id"] in accepted)
    reasons: collections.Counter[str] = collections.Counter()
    unknown_received = unknown_not_received = failed_received = 0
    lost, sent_not_received = [], []
    for message_id in accepted:
        row = by_id.get(message_id)
        status = row["status"] if row is not None else "missing"
        got = received.get(message_id, 0)
        if status in ("failed", "unknown"):
            error = orjson.loads(row["error"]) if isinstance(row["error"], str) else row["error"]
            reasons[f"{status}: {(error or {}).get('code')}"] += 1
            if status == "unknown":
                unknown_received += got > 0
                unknown_not_received += got == 0
            else:
                failed_received += got > 0
        elif got == 0:
            (sent_not_received if status == "sent" else lost).append(message_id)
    return {
        "accepted": len(accepted),
        "stored": len(rows),
        "statuses": dict(statuses),
        "received_by_provider": sum(1 for message_id in accepted if received.get(message_id)),
        "duplicates": sum(1 for n in received.values() if n > 1),
        "duplicate_examples": [k for k, n in received.items() if n > 1][:5],
        "stored_twice": sum(1 for n in per_body.values() if n > 1),
        "lost": len(lost),
        "lost_examples": [(m, by_id[m]["status"] if m in by_id else "missing") for m in lost[:5]],
        "sent_but_not_received": len(sent_not_received),
        "unknown_received": unknown_received,
        "unknown_not_received": unknown_not_received,
        "failed_but_received": failed_received,
        "ended_by_reason": dict(reasons),
    }


# --- the run -------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    run = secrets.token_hex(4)
    async with contextlib.AsyncExitStack() as exits:
        postgres = await exits.enter_async_context(private_postgres())
        redis = await exits.enter_async_context(private_redis())
        stack = await exits.enter_async_context(
            guiche_stack(
                postgres.url,
                redis.url,
                log_level=args.log_level,
                throughput_per_second=1000.0,
                graph_args=("--delay-ms", str(args.graph_delay_ms)),
            )
        )
        environment = await environment_facts(stack.database_url, stack.redis_url)
        env = {
            **stack.env,
            "GUICHE_SEND_TIMEOUT_SECONDS": str(SEND_TIMEOUT_SECONDS),
            "GUICHE_OUTBOX_SWEEP_GRACE_SECONDS": "5",
        }
        workers = Workers(env)
        exits.callback(workers.cleanup)
        exits.push_async_callback(workers.stop)
        scheduler = Process("guiche-scheduler", [*guiche_command(), "scheduler"], env).start()
        exits.callback(scheduler.cleanup)
        exits.push_async_callback(scheduler.stop)
        workers.start()
        conversations = await open_conversations(stack, args.conversations)

        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=2 * args.concurrency)
        began = time.monotonic()
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            inbound, outbound, faults = await asyncio.gather(
                drive_inbound(session, stack, run, args),
                drive_outbound(session, stack, conversations, run, args),
                inject(schedule(args), args.duration, workers, postgres, redis),
            )
        drive_seconds = time.monotonic() - began

        accepted = set(outbound.acked.values())

        async def settled() -> bool:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                rows = await outbound_rows(stack, run)
                return not any(r["status"] == "pending" for r in rows if r["id"] in accepted)
            return False

        settle_began = time.monotonic()
        all_settled = await wait_until(settled, timeout=args.max_wait, interval=0.5)
        settle_seconds = time.monotonic() - settle_began
        inbound_counts = count_inbound(inbound, await inbound_stored(stack, run))
        outbound_counts = count_outbound(
            outbound, await outbound_rows(stack, run), await provider_received(stack)
        )
        logs = {
            "web": stack.web.log_tail(15),
            "last_worker": workers.current.log_tail(15) if workers.current else "",
            "scheduler": scheduler.log_tail(10),
        }
    return build_report(
        args,
        environment=environment,
        inbound=inbound.as_dict(args.inbound, drive_seconds) | inbound_counts,
        outbound=outbound.as_dict(args.outbound, drive_seconds) | outbound_counts,
        faults=faults,
        timing={
            "drive_seconds": round(drive_seconds, 2),
            "settle_seconds": round(settle_seconds, 2),
            "all_settled": all_settled,
        },
        logs=logs,
    )


def build_report(
    args: argparse.Namespace,
    *,
    environment: dict[str, Any],
    inbound: dict[str, Any],
    outbound: dict[str, Any],
    faults: list[dict[str, Any]],
    timing: dict[str, Any],
    logs: dict[str, str],
) -> dict[str, Any]:
    figures = {
        "inbound_acked": inbound["acked"],
        "inbound_stored": inbound["stored"],
        "inbound_lost": inbound["lost"],
        "inbound_duplicates": inbound["duplicates"],
        "inbound_gave_up": inbound["gave_up"],
        "outbound_accepted": outbound["accepted"],
        "outbound_received": outbound["received_by_provider"],
        "outbound_sent": outbound["statuses"].get("sent", 0),
        "outbound_unknown": outbound["statuses"].get("unknown", 0),
        "outbound_failed": outbound["statuses"].get("failed", 0),
        "outbound_duplicates": outbound["duplicates"] + outbound["stored_twice"],
        "outbound_lost": outbound["lost"] + outbound["sent_but_not_received"],
        "outbound_gave_up": outbound["gave_up"],
        "faults_injected": len(faults),
        **timing,
    }
    parameters = {
        "inbound": args.inbound,
        "outbound": args.outbound,
        "duration_seconds": args.duration,
        "concurrency_per_side": args.concurrency,
        "conversations": args.conversations,
        "graph_delay_ms": args.graph_delay_ms,
        "send_timeout_seconds": SEND_TIMEOUT_SECONDS,
        "retry_for_seconds": args.retry_for,
        "smoke": args.smoke,
        "servers": "private PostgreSQL cluster and redis-server (no persistence), both fresh",
        "processes": "guiche web, guiche worker (killed and replaced), guiche scheduler",
    }
    notes = [
        "inbound lost = acknowledged with 200 but no stored row for its wamid",
        "outbound duplicates = ids the fake provider received more than once, plus bodies "
        "stored as two messages; lost = accepted, never received, and neither failed nor "
        "unknown (still pending at the end included), plus 'sent' without a provider receipt",
        "unknown = a worker was killed after its claim: Meta cannot be asked, so the message "
        "is not sent again (unknown_received says how many the provider had in fact)",
    ]
    report = make_report(
        "faults",
        parameters=parameters,
        figures=figures,
        ceiling={},
        ratios={},
        targets=TARGETS,
        environment=environment,
        notes=notes,
    )
    report["faults"] = faults
    report["inbound"] = inbound
    report["outbound"] = outbound
    if any(figures[key] for key in MUST_BE_ZERO):
        report["log_tails"] = logs
    return report


def table(report: dict[str, Any]) -> str:
    f = report["figures"]
    text = format_table(
        ("fault", "at s", "down s"),
        [(x["fault"], x["at_s"], x["down_s"]) for x in report["faults"]],
    )
    text += "\n\n" + format_table(
        ("side", "total", "acked", "stored/received", "lost", "duplicates"),
        [
            (
                "inbound webhooks",
                report["parameters"]["inbound"],
                f["inbound_acked"],
                f["inbound_stored"],
                f["inbound_lost"],
                f["inbound_duplicates"],
            ),
            (
                "outbound sends",
                report["parameters"]["outbound"],
                f["outbound_accepted"],
                f["outbound_received"],
                f["outbound_lost"],
                f["outbound_duplicates"],
            ),
        ],
    )
    out = report["outbound"]
    text += (
        f"\noutbound: {f['outbound_sent']} sent, {f['outbound_unknown']} unknown "
        f"({out['unknown_received']} of them received by the provider), "
        f"{f['outbound_failed']} failed; by reason: {out['ended_by_reason']}"
        f"\nclient retries: inbound {report['inbound']['retried']} "
        f"{report['inbound']['errors_by_kind']}, outbound {out['retried']} "
        f"{out['errors_by_kind']}"
        f"\ndrive {f['drive_seconds']} s, settle {f['settle_seconds']} s"
    )
    return text


def failures(report: dict[str, Any]) -> list[str]:
    return [f"{key}={report['figures'][key]}" for key in MUST_BE_ZERO if report["figures"][key]]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__ or "fault run")
    parser.add_argument("--inbound", type=int, help="inbound webhooks (default 3000)")
    parser.add_argument("--outbound", type=int, help="outbound sends (default 1500)")
    parser.add_argument("--duration", type=float, help="seconds to spread the load over (60)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight per side")
    parser.add_argument("--conversations", type=int, help="conversations to send to (50)")
    parser.add_argument("--graph-delay-ms", type=float, default=50.0)
    parser.add_argument("--retry-for", type=float, default=120.0, help="client retries, seconds")
    parser.add_argument("--max-wait", type=float, default=240.0, help="for sends to settle")
    parser.add_argument("--no-faults", action="store_true", help="the same load, no faults")
    args = parser.parse_args(argv)
    small = args.smoke
    args.inbound = args.inbound or (60 if small else 3000)
    args.outbound = args.outbound or (30 if small else 1500)
    args.duration = args.duration or (8.0 if small else 60.0)
    args.conversations = args.conversations or (3 if small else 50)
    if small:
        args.max_wait = min(args.max_wait, 150.0)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Like `run_benchmark`, but a run that lost or duplicated anything exits 1."""
    args = parse_args(argv)
    with bench_lock(not args.no_lock):
        report = asyncio.run(bench(args))
    emit(report, table(report), json_out=args.json_out)
    broken = failures(report)
    if broken:
        print(f"fault run NOT clean: {', '.join(broken)}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
