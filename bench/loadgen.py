"""Webhook load generator: signed Meta text webhooks posted over keep-alive connections.

It runs as its own process so the server under test does not share an event loop with
the client. Every body is built and signed before the clock starts (Meta signs on its
side), then `--concurrency` workers post them over one pooled session, either as fast as
the server acknowledges (closed loop) or at a fixed `--rate` of requests per second
(open loop: the latency then includes any queueing the server causes). The result is one
JSON line: requests, acknowledgements, errors by kind, elapsed seconds, ack latency.

    python -m bench.loadgen --url http://127.0.0.1:8080/webhooks/meta_cloud/<id> \\
        --phone-number-id 3012... --app-secret s3cr3t --requests 10000 --batch 1
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from bench.common import inbound_texts, latency_ms, meta_signature, meta_text_webhook, per_second


def build_requests(args: argparse.Namespace) -> list[tuple[bytes, dict[str, str]]]:
    """Every (body, headers) pair, signed; request i carries messages i*batch..(i+1)*batch-1."""
    texts = inbound_texts(
        args.requests * args.batch, start=args.start, run=args.run, customers=args.customers
    )
    built = []
    for i in range(args.requests):
        chunk = texts[i * args.batch : (i + 1) * args.batch]
        at = args.timestamp + int(i * args.timestamp_step)
        body = meta_text_webhook(args.phone_number_id, chunk, timestamp=at)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(body, args.app_secret),
        }
        built.append((body, headers))
    return built


async def post_all(
    urls: Sequence[str],
    requests: list[tuple[bytes, dict[str, str]]],
    *,
    concurrency: int,
    rate: float | None,
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    acked_messages = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(requests)):
        queue.put_nowait(index)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    started = time.perf_counter()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal acked_messages
        while not queue.empty():
            index = queue.get_nowait()
            if rate:
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            body, headers = requests[index]
            url = urls[index % len(urls)]  # round robin over the servers
            sent = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    if response.status == 200:
                        latencies.append(time.perf_counter() - sent)
                        acked_messages += int(orjson.loads(payload).get("messages", 0))
                    else:
                        errors[f"http_{response.status}"] += 1
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors[type(exc).__name__] += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(requests),
        "acked": len(latencies),
        "acked_messages": acked_messages,
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        "elapsed_s": round(elapsed, 4),
        "requests_per_second": per_second(len(latencies), elapsed),
        "latency": latency_ms(latencies),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--url",
        required=True,
        action="append",
        help="the webhook URL to post to; repeated, requests go round robin over them",
    )
    parser.add_argument("--phone-number-id", required=True)
    parser.add_argument("--app-secret", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1, help="messages per webhook")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, help="requests per second (open loop)")
    parser.add_argument("--run", required=True, help="wamid namespace: same run = same wamids")
    parser.add_argument("--start", type=int, default=0, help="index of the first message")
    parser.add_argument(
        "--customers", type=int, help="phones the messages come from in turn (default: one each)"
    )
    parser.add_argument("--timestamp", type=int, default=int(time.time()))
    parser.add_argument(
        "--timestamp-step", type=float, default=0.0, help="seconds added per request's messages"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    requests = build_requests(args)
    result = asyncio.run(post_all(args.url, requests, concurrency=args.concurrency, rate=args.rate))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
