"""Outgoing webhooks (plugins/webhooks): deliveries per second from one worker, against
a bare aiohttp POST loop in the same run, and the delivery lag while events arrive at a
steady rate.

`python -m bench.webhooks [--subscriptions 8] [--events 2000] [--rate 500] [--seconds 10]`

- **Throughput**: `--subscriptions` subscriptions of one company, each with
  `max_batch = 1` (one event per POST, the receiver keeping up), `--events` events in the
  log; the worker (`deliver_due` passes back to back, in this process: one worker) must
  deliver every event to every subscription. The ceiling is a bare aiohttp loop per
  subscription POSTing the same number of bodies of the same size to the same receiver.
- **Lag**: one subscription (default `max_batch`), events published at `--rate` per
  second (`guiche.plugin.publish_event`, one transaction each) for `--seconds`, while the
  worker runs passes at most every 0.2 s (what the plugin's wake-ups allow); lag is the
  receiver's arrival time − the event's `created_at`.

The receiver is `bench.webhook_receiver`, in its own process. Figures `duplicates` and
`out_of_order` must be 0.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import sys
import time
import uuid
from typing import Any

import aiohttp
import orjson
from cryptography.fernet import Fernet

from bench.common import (
    Target,
    base_parser,
    bench_database,
    create_company,
    environment_facts,
    format_table,
    free_port,
    latency_ms,
    make_report,
    per_second,
    python_module,
    ratio,
    run_benchmark,
)

TARGETS = (
    Target("deliveries/s vs a bare aiohttp POST loop", "deliveries_ratio", ">=", 0.5),
    Target("no duplicate event ids", "duplicates", "==", 0),
    Target("no event lost", "lost", "==", 0),
    Target("no event out of order", "out_of_order", "==", 0),
)


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--subscriptions", type=int, default=8)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.smoke:
        args.subscriptions, args.events, args.rate, args.seconds = 2, 20, 50.0, 1.0
    return args


async def receiver_stats(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(f"{base}/stats") as resp:
        return dict(await resp.json())


async def wait_receiver(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        try:
            await receiver_stats(session, base)
            return
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the receiver did not start")


async def enable(services: Any, tenant_id: uuid.UUID, settings: dict[str, Any]) -> None:
    async with services.db.transaction() as tx:
        await tx.connection.execute(
            """INSERT INTO tenant_plugins (id, tenant, plugin, enabled, settings)
               VALUES ($1, $2, 'webhooks', true, $3::jsonb)""",
            uuid.uuid4(), tenant_id, orjson.dumps(settings).decode(),
        )


async def bulk_events(services: Any, tenant_id: uuid.UUID, n: int) -> None:
    async with services.db.transaction() as tx:
        await tx.connection.execute(
            """INSERT INTO events (tenant, type, conversation, data)
               SELECT $1, 'bench.event', gen_random_uuid(),
                      jsonb_build_object('n', i, 'text', repeat('x', 200))
               FROM generate_series(1, $2) AS i""",
            tenant_id, n,
        )


async def measure(args: Any) -> dict[str, Any]:
    os.environ["GUICHE_WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.1/32"  # the local receiver
    os.environ["GUICHE_WEBHOOKS_ALLOW_HTTP"] = "1"
    from guiche_webhooks import store
    from guiche_webhooks.delivery import deliver_due

    from guiche.app import build_services, close_resources, open_resources
    from guiche.foundation.config import Settings
    from guiche.plugin import encrypt_json, publish_event

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    receiver = await asyncio.create_subprocess_exec(
        *python_module("bench.webhook_receiver", str(port)), cwd=os.getcwd()
    )
    figures: dict[str, Any] = {}
    ceiling: dict[str, Any] = {}
    notes: list[str] = []
    try:
        async with bench_database(args.server_url) as database_url, aiohttp.ClientSession() as http:
            await wait_receiver(http, base)
            settings = Settings(
                database_url=database_url, redis_url=None,
                secret_key="bench-" + secrets.token_hex(24),
                encryption_keys=[Fernet.generate_key().decode()], log_json=False,
            )
            services = build_services(settings)
            await open_resources(services)
            try:
                environment = await environment_facts(database_url, args.redis_url)
                # --- throughput -------------------------------------------------------
                company = await create_company(database_url)
                await enable(services, company.tenant_id, {"max_batch": 1})
                for _ in range(args.subscriptions):
                    await store.create_subscription(
                        services, company.tenant_id, url=f"{base}/hook", description="bench",
                        event_types=[], channel_ids=[], department_ids=[], active=True,
                        sealed_secret=encrypt_json(
                            services, {"v": "whsec_" + secrets.token_hex(16)}
                        ),
                    )
                await bulk_events(services, company.tenant_id, args.events)
                await http.post(f"{base}/reset")
                total = args.subscriptions * args.events
                started = time.perf_counter()
                delivered = 0
                while delivered < total and time.perf_counter() - started < 600:
                    delivered += await deliver_due(services, tenants={company.tenant_id})
                took = time.perf_counter() - started
                stats = await receiver_stats(http, base)
                figures.update(
                    deliveries=stats["posts"],
                    deliveries_per_second=per_second(stats["posts"], took),
                    events_delivered=stats["events"],
                    duplicates=stats["duplicates"],
                    out_of_order=stats["out_of_order"],
                )
                # --- the ceiling: a bare aiohttp POST loop per subscription -------------
                # Same receiver route (it parses and dedupes alike), same body shape and
                # size, serialised per POST as any sender must; no log, no cursor, no DB.
                await http.post(f"{base}/reset")

                async def loop() -> None:
                    sub_id = str(uuid.uuid4())
                    async with aiohttp.ClientSession() as own:
                        for i in range(args.events):
                            body = orjson.dumps(
                                {"subscription_id": sub_id, "events": [
                                    {"id": f"evt_{i + 1}", "seq": i + 1, "type": "bench.event",
                                     "created_at": dt.datetime.now(dt.UTC),
                                     "conversation_id": str(uuid.uuid4()),
                                     "data": {"n": i, "text": "x" * 200}}]}
                            )
                            async with own.post(
                                f"{base}/hook", data=body,
                                headers={"Content-Type": "application/json"},
                            ) as resp:
                                await resp.read()

                started = time.perf_counter()
                await asyncio.gather(*(loop() for _ in range(args.subscriptions)))
                took = time.perf_counter() - started
                bare = (await receiver_stats(http, base))["posts"]
                ceiling.update(deliveries=bare, deliveries_per_second=per_second(bare, took))
                # --- lag under a steady rate ---------------------------------------------
                lagging = await create_company(database_url)
                await enable(services, lagging.tenant_id, {})
                await store.create_subscription(
                    services, lagging.tenant_id, url=f"{base}/hook", description="lag",
                    event_types=[], channel_ids=[], department_ids=[], active=True,
                    sealed_secret=encrypt_json(services, {"v": "whsec_" + secrets.token_hex(16)}),
                )
                await http.post(f"{base}/reset")
                stop = asyncio.Event()
                produced = 0

                producers = 1 if args.smoke else 8
                began = time.perf_counter()

                async def produce(lane: int) -> None:
                    nonlocal produced
                    count = int(args.rate * args.seconds / producers)
                    rate = args.rate / producers
                    for i in range(count):
                        due = began + lane / args.rate + i / rate
                        delay = due - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        await publish_event(
                            services, lagging.tenant_id, "bench.event", {"n": i},
                            conversation_id=uuid.uuid4(),
                        )
                        produced += 1

                async def produce_all() -> None:
                    await asyncio.gather(*(produce(lane) for lane in range(producers)))
                    figures["produced_per_second"] = per_second(
                        produced, time.perf_counter() - began
                    )
                    stop.set()

                async def work() -> None:
                    give_up = None
                    while True:
                        began = time.perf_counter()
                        await deliver_due(services, tenants={lagging.tenant_id})
                        if stop.is_set():
                            give_up = give_up or time.perf_counter() + 60
                            stats = await receiver_stats(http, base)
                            if stats["events"] >= produced or time.perf_counter() > give_up:
                                return
                        await asyncio.sleep(max(0.0, 0.2 - (time.perf_counter() - began)))

                await asyncio.gather(produce_all(), work())
                stats = await receiver_stats(http, base)
                lag = latency_ms(stats["lags"])
                figures.update(
                    lag_events=stats["events"], lag_p50_ms=lag["p50_ms"],
                    lag_p99_ms=lag["p99_ms"], lag_max_ms=lag["max_ms"],
                    lag_posts=stats["posts"],
                )
                figures["lost"] = produced - stats["events"]  # never delivered in 60 s
                figures["duplicates"] += stats["duplicates"]
                figures["out_of_order"] += stats["out_of_order"]
            finally:
                await close_resources(services)
    finally:
        receiver.terminate()
        await receiver.wait()
    notes.append(
        "one worker = deliver_due passes in this process; the receiver runs in its own"
        " process. Lag events are published with publish_event (one transaction each),"
        " standing in for ingested messages (each of which records a message.new)."
    )
    ratios = {"deliveries_ratio": ratio(figures["deliveries_per_second"],
                                         ceiling["deliveries_per_second"])}
    return make_report(
        "webhooks",
        parameters={
            "subscriptions": args.subscriptions, "events": args.events, "rate": args.rate,
            "seconds": args.seconds, "smoke": args.smoke,
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
        ("deliveries/s", f.get("deliveries_per_second"), c.get("deliveries_per_second"),
         report["ratio"].get("deliveries_ratio")),
        ("lag p50 ms", f.get("lag_p50_ms"), None, None),
        ("lag p99 ms", f.get("lag_p99_ms"), None, None),
        ("produced/s", f.get("produced_per_second"), None, None),
    ]
    return format_table(("figure", "guiche", "bare aiohttp", "ratio"), rows)


def main(argv: list[str] | None = None) -> None:
    run_benchmark(measure, table, parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
