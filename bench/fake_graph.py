"""A local stand-in for Meta's Graph API, run as its own process by the benchmarks.

It answers what Guichê calls: `GET /{version}/{phone_number_id}` (channel provisioning)
and `POST /{version}/{phone_number_id}/messages` with a fresh wamid, like Meta. It does
no work beyond that, so a send benchmark measures the sender, not the fake.
`GET /_stats` says how many sends it answered (a cross-check of the database count).

    python -m bench.fake_graph --port 8765
"""

from __future__ import annotations

import argparse
import itertools

import orjson
from aiohttp import web

_SENT = web.AppKey("sent", dict)


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def send_message(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    stats = request.app[_SENT]
    stats["count"] += 1
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


def make_app() -> web.Application:
    app = web.Application()
    app[_SENT] = {"count": 0, "ids": itertools.count(1)}
    app.router.add_get("/_stats", stats)
    app.router.add_post("/{version}/{number}/messages", send_message)
    app.router.add_get("/{version}/{number}", phone_number)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
