"""A local stand-in for Meta's Graph API, run as its own process by the benchmarks.

It answers what Guichê calls: `GET /{version}/{phone_number_id}` (channel provisioning)
and `POST /{version}/{phone_number_id}/messages` with a fresh wamid, like Meta. It does
no work beyond that, so a send benchmark measures the sender, not the fake.
`GET /_stats` says how many sends it answered (a cross-check of the database count);
`GET /_received` how many times each of our message ids (`biz_opaque_callback_data`)
came in, which is how the fault run finds duplicates. `--delay-ms` holds each answer
that long (still far inside the send timeout), so a killed worker dies mid-call.

    python -m bench.fake_graph --port 8765 [--delay-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools

import orjson
from aiohttp import web

_SENT = web.AppKey("sent", dict)
_RECEIVED = web.AppKey("received", collections.Counter)
_DELAY = web.AppKey("delay", float)


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def send_message(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    stats = request.app[_SENT]
    stats["count"] += 1
    ours = body.get("biz_opaque_callback_data")
    if ours:
        request.app[_RECEIVED][str(ours)] += 1
    if request.app[_DELAY]:
        await asyncio.sleep(request.app[_DELAY])
    wamid = f"wamid.fake.{next(stats['ids'])}"
    to = str(body.get("to") or body.get("recipient") or "")
    return _json(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": wamid}],
        }
    )


async def phone_number(request: web.Request) -> web.Response:
    number_id = request.match_info["number"]
    return _json(
        {"id": number_id, "display_phone_number": "+55 11 3030-4040", "verified_name": "Bench"}
    )


async def stats(request: web.Request) -> web.Response:
    return _json({"sent": request.app[_SENT]["count"]})


async def received(request: web.Request) -> web.Response:
    return _json({"counts": dict(request.app[_RECEIVED])})


def make_app(delay_seconds: float = 0.0) -> web.Application:
    app = web.Application()
    app[_SENT] = {"count": 0, "ids": itertools.count(1)}
    app[_RECEIVED] = collections.Counter()
    app[_DELAY] = delay_seconds
    app.router.add_get("/_stats", stats)
    app.router.add_get("/_received", received)
    app.router.add_post("/{version}/{number}/messages", send_message)
    app.router.add_get("/{version}/{number}", phone_number)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="hold each send's answer")
    args = parser.parse_args()
    web.run_app(
        make_app(args.delay_ms / 1000.0),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
