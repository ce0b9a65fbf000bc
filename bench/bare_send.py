"""The send ceiling: a bare client loop posting Meta message bodies to the fake Graph API.

The same number of sends in flight as a worker runs tasks
(`guiche.worker.MAX_CONCURRENT_TASKS`), in its own process like the worker. No
database, no queue, no limiter: what one Python process can push through the client here.

`--client`:
- `guiche` (default): Guichê's own client, `guiche.provider_http.client.outbound_client()`
  (httpx's API over aiohttp's transport, 15 s timeout): the send benchmark's ceiling.
- `httpx`: a plain `httpx.AsyncClient` (httpcore transport), the client the issue's
  "bare httpx loop" named; reported beside it so the two ratios can be compared.
- `aiohttp`: the loop on a bare aiohttp session: what httpx's API costs on top.

    python -m bench.bare_send --url http://127.0.0.1:8765/v26.0/3012.../messages --sends 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import orjson

from bench.common import per_second
from guiche.provider_http.client import TIMEOUT, outbound_client


def message_body(index: int) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": f"55119{index % 10**8:08d}",
        "type": "text",
        "text": {"body": f"Seu pedido #{index} saiu para entrega.", "preview_url": False},
    }


HEADERS = {"Authorization": "Bearer bench"}
CLIENTS = ("guiche", "httpx", "aiohttp")


async def post_httpx(client: httpx.AsyncClient, url: str, index: int) -> bool:
    response = await client.post(url, json=message_body(index), headers=HEADERS)
    return response.status_code == 200 and bool(response.json()["messages"][0]["id"])


async def post_aiohttp(session: aiohttp.ClientSession, url: str, index: int) -> bool:
    async with session.post(url, json=message_body(index), headers=HEADERS) as response:
        return response.status == 200 and bool((await response.json())["messages"][0]["id"])


async def send_all(url: str, sends: int, concurrency: int, client: str) -> dict[str, Any]:
    remaining = iter(range(sends))
    ok = errors = 0

    async def worker(post: Callable[[int], Awaitable[bool]]) -> None:
        nonlocal ok, errors
        for index in remaining:
            try:
                if await post(index):
                    ok += 1
                else:
                    errors += 1
            except (httpx.HTTPError, aiohttp.ClientError):
                errors += 1

    async with contextlib.AsyncExitStack() as stack:
        if client in ("guiche", "httpx"):
            hx = await stack.enter_async_context(
                outbound_client() if client == "guiche" else httpx.AsyncClient(timeout=TIMEOUT)
            )
            post = functools.partial(post_httpx, hx, url)
        else:
            session = await stack.enter_async_context(aiohttp.ClientSession())
            post = functools.partial(post_aiohttp, session, url)
        started = time.perf_counter()
        await asyncio.gather(*(worker(post) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "client": client,
        "sends": sends,
        "concurrency": concurrency,
        "ok": ok,
        "errors": errors,
        "elapsed_s": round(elapsed, 4),
        "sent_per_second": per_second(ok, elapsed),
    }


def main() -> None:
    from guiche.worker import MAX_CONCURRENT_TASKS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--sends", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=MAX_CONCURRENT_TASKS)
    parser.add_argument("--client", choices=CLIENTS, default="guiche")
    args = parser.parse_args()
    result = asyncio.run(send_all(args.url, args.sends, args.concurrency, args.client))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
