"""campaigns: a large campaign through the real processes to the fake Graph API.

`guiche web` and one `guiche worker` (the campaigns plugin drives and sends in it) on a
fresh database, a Meta channel pointed at `bench.fake_graph`. Each run creates a
template campaign (cold contacts: Meta's 24-hour rule), uploads its targets as one CSV
(`POST .../targets/import`, streamed), starts it and waits until it is `finished`.

- **unpaced**: `--targets` (100,000) with pacing off (campaign rate 60,000/min, no
  shared channel budget): targets imported per second, and sends per second from the
  ledger's own `sent_at` (first to last), against the send path's ceiling in the same
  run (`bench.bare_send` on Guichê's client, as `bench.send` measures it).
- **paced** at 10/s and 80/s (`--paced-seconds` of sends each, jitter 0.2): the achieved
  rate over the run and its error (target ±2 %).
- **duplicates**: sends the fake Graph answered per message id (`biz_opaque_callback_data`)
  beyond one, plus targets without exactly one message; must be 0.

    python -m bench.campaigns [--targets 100000] [--paced-seconds 30]
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp
import asyncpg

from bench.common import (
    Stack,
    Target,
    api,
    base_parser,
    environment_facts,
    format_table,
    guiche_stack,
    make_report,
    per_second,
    ratio,
    run_benchmark,
    wait_until,
)
from bench.send import ceiling_run

BASE = "/api/v1/plugins/campaigns"
TEMPLATE = {
    "type": "template",
    "template": {
        "name": "oferta",
        "language": "pt_BR",
        "components": [
            {"type": "body", "parameters": [{"type": "text", "value": "{{first_name}}"}]}
        ],
    },
}

TARGETS = (
    Target("campaign duplicates", "duplicates", "==", 0),
    Target("paced at 10/s: rate error", "paced_10_error_percent", "<=", 2, "%"),
    Target("paced at 80/s: rate error", "paced_80_error_percent", "<=", 2, "%"),
)


def csv_body(count: int, offset: int) -> bytes:
    lines = ["phone,name"]
    lines += [f"+55119{offset + i:08d},Cliente {i} Bench" for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


async def one_run(
    session: aiohttp.ClientSession,
    stack: Stack,
    *,
    targets: int,
    per_minute: float,
    jitter: float,
    offset: int,
    max_wait: float,
) -> dict[str, Any]:
    """Create, import, start and wait for one campaign; its figures from the database."""
    url = f"{stack.web_url}{BASE}/campaigns"
    campaign = await api(
        session,
        "POST",
        url,
        headers=stack.headers,
        json_body={
            "name": f"bench {uuid.uuid4().hex[:6]}",
            "channel_id": str(stack.channel.id),
            "content": TEMPLATE,
            "rate_per_minute": per_minute,
            "jitter": jitter,
        },
    )
    cid = campaign["id"]
    body = csv_body(targets, offset)
    started = time.perf_counter()
    async with session.post(
        f"{url}/{cid}/targets/import",
        data=body,
        headers={**stack.headers, "Content-Type": "text/csv"},
    ) as response:
        imported = await response.json()
        assert response.status == 200, imported
    import_seconds = time.perf_counter() - started
    await api(session, "POST", f"{url}/{cid}/start", headers=stack.headers)

    async def finished() -> bool:
        got = await api(session, "GET", f"{url}/{cid}", headers=stack.headers)
        return got["status"] == "finished"

    done = await wait_until(finished, timeout=max_wait, interval=0.5)
    conn = await asyncpg.connect(stack.database_url)
    try:
        times = [
            row["t"]
            for row in await conn.fetch(
                "SELECT extract(epoch FROM sent_at)::float8 AS t FROM campaign_targets"
                " WHERE campaign = $1 AND sent_at IS NOT NULL ORDER BY sent_at",
                uuid.UUID(cid),
            )
        ]
        ledger = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT message_id) AS messages,"
            " count(*) FILTER (WHERE message_id IS NULL) AS without"
            " FROM campaign_targets WHERE campaign = $1",
            uuid.UUID(cid),
        )
        states = {
            row["state"]: row["n"]
            for row in await conn.fetch(
                "SELECT state, count(*) AS n FROM campaign_targets WHERE campaign = $1"
                " GROUP BY state",
                uuid.UUID(cid),
            )
        }
    finally:
        await conn.close()
    span = times[-1] - times[0] if len(times) > 1 else None
    rate = round((len(times) - 1) / span, 3) if span else None
    setting = per_minute / 60.0
    return {
        "targets": targets,
        "finished": done,
        "imported": imported["added"],
        "import_seconds": round(import_seconds, 3),
        "imported_per_second": per_second(imported["added"], import_seconds),
        "rate_setting_per_second": setting,
        "sent_per_second": rate,
        "error_percent": round(100 * abs(rate - setting) / setting, 2) if rate else None,
        "states": states,
        "ledger_rows_without_message": ledger["without"],
        "ledger_rows_sharing_a_message": ledger["n"] - ledger["without"] - ledger["messages"],
    }


async def graph_duplicates(session: aiohttp.ClientSession, stack: Stack) -> int:
    async with session.get(f"{stack.graph_url}/_received") as response:
        counts = (await response.json())["counts"]
    return sum(n - 1 for n in counts.values() if n > 1)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    async with guiche_stack(
        args.server_url,
        args.redis_url,
        log_level=args.log_level,
        throughput_per_second=1000.0,
        worker=True,
    ) as stack:
        environment = await environment_facts(stack.database_url, stack.redis_url)
        async with aiohttp.ClientSession() as session:
            await api(
                session,
                "PUT",
                f"{stack.web_url}/api/v1/plugins/campaigns",
                headers=stack.headers,
                json_body={"enabled": True, "settings": {"channel_rate_per_minute": 0.0}},
            )
            runs["unpaced"] = await one_run(
                session,
                stack,
                targets=args.targets,
                per_minute=60_000,
                jitter=0.0,
                offset=0,
                max_wait=args.max_wait,
            )
            for per_second_setting, offset in ((10, 30_000_000), (80, 40_000_000)):
                runs[f"paced_{per_second_setting}"] = await one_run(
                    session,
                    stack,
                    targets=max(3, int(per_second_setting * args.paced_seconds)),
                    per_minute=per_second_setting * 60.0,
                    jitter=0.2,
                    offset=offset,
                    max_wait=args.max_wait,
                )
            runs["graph_duplicates"] = await graph_duplicates(session, stack)
            runs["ceiling"] = await ceiling_run(stack, min(args.targets, 5000), "guiche")
    return build_report(args, runs, environment)


def build_report(
    args: argparse.Namespace, runs: dict[str, Any], environment: dict[str, Any]
) -> dict[str, Any]:
    unpaced, p10, p80 = runs["unpaced"], runs["paced_10"], runs["paced_80"]
    duplicates = runs["graph_duplicates"] + sum(
        run["ledger_rows_sharing_a_message"] for run in (unpaced, p10, p80)
    )
    figures = {
        "imported_per_second": unpaced["imported_per_second"],
        "sent_per_second_unpaced": unpaced["sent_per_second"],
        "paced_10_per_second": p10["sent_per_second"],
        "paced_10_error_percent": p10["error_percent"],
        "paced_80_per_second": p80["sent_per_second"],
        "paced_80_error_percent": p80["error_percent"],
        "duplicates": duplicates,
        "all_finished": all(run["finished"] for run in (unpaced, p10, p80)),
    }
    ceiling = {"sent_per_second": runs["ceiling"]["sent_per_second"]}
    ratios = {
        "unpaced_share_of_ceiling": ratio(unpaced["sent_per_second"], ceiling["sent_per_second"])
    }
    parameters = {
        "targets": args.targets,
        "paced_seconds": args.paced_seconds,
        "smoke": args.smoke,
        "worker": "one `guiche worker` process (drives the campaign and sends)",
        "graph_api": "bench.fake_graph (aiohttp, own process)",
        "ceiling": "bench.bare_send --client guiche (the HTTP send loop alone)",
    }
    notes = [
        "rates = (sent - 1) / (last sent_at - first sent_at) from the ledger",
        "duplicates = fake Graph sends per message id beyond one + ledger rows sharing a message",
    ]
    report = make_report(
        "campaigns",
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
    f, c = report["figures"], report["ceiling"]
    rows = [
        ("targets imported/s", f["imported_per_second"], ""),
        ("sends/s, pacing off", f["sent_per_second_unpaced"], c["sent_per_second"]),
        ("paced 10/s", f["paced_10_per_second"], f"error {f['paced_10_error_percent']} %"),
        ("paced 80/s", f["paced_80_per_second"], f"error {f['paced_80_error_percent']} %"),
        ("duplicates", f["duplicates"], ""),
    ]
    return format_table(("figure", "value", "ceiling / note"), rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__ or "campaigns benchmark")
    parser.add_argument("--targets", type=int, help="targets of the unpaced run (100000)")
    parser.add_argument("--paced-seconds", type=float, help="length of each paced run (30)")
    parser.add_argument("--max-wait", type=float, default=3600.0, help="give up after (s)")
    args = parser.parse_args(argv)
    args.targets = args.targets or (20 if args.smoke else 100_000)
    args.paced_seconds = args.paced_seconds or (1.0 if args.smoke else 30.0)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    run_benchmark(bench, table, parse_args(argv))


if __name__ == "__main__":
    main()
