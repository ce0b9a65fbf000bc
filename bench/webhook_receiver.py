"""A webhook receiver for `bench.webhooks`, in its own process (it must not share the
measured worker's CPU time): answers 200, counts events and duplicates, and records each
event's lag (arrival − `created_at`). `GET /stats` reports; `POST /reset` clears."""

from __future__ import annotations

import datetime as dt
import sys
import time

import orjson
from aiohttp import web

STATE: dict[str, object] = {}


def reset() -> None:
    STATE.update(posts=0, events=0, duplicates=0, lags=[], seen=set(), out_of_order=0, last={})


async def hook(request: web.Request) -> web.Response:
    body = await request.read()
    now = time.time()
    STATE["posts"] = int(STATE["posts"]) + 1  # type: ignore[call-overload]
    document = orjson.loads(body)
    seen: set[tuple[str, str]] = STATE["seen"]  # type: ignore[assignment]
    last: dict[str, int] = STATE["last"]  # type: ignore[assignment]
    lags: list[float] = STATE["lags"]  # type: ignore[assignment]
    sub = document["subscription_id"]
    for event in document["events"]:
        key = (sub, event["id"])
        if key in seen:
            STATE["duplicates"] = int(STATE["duplicates"]) + 1  # type: ignore[call-overload]
            continue
        seen.add(key)
        if event["seq"] < last.get(sub, 0):
            STATE["out_of_order"] = int(STATE["out_of_order"]) + 1  # type: ignore[call-overload]
        last[sub] = event["seq"]
        STATE["events"] = int(STATE["events"]) + 1  # type: ignore[call-overload]
        created = dt.datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))
        lags.append(now - created.timestamp())
    return web.Response(text="ok")


async def bare(request: web.Request) -> web.Response:
    await request.read()
    STATE["posts"] = int(STATE["posts"]) + 1  # type: ignore[call-overload]
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    return web.json_response(
        {key: value for key, value in STATE.items() if key not in ("seen", "last")}
    )


async def clear(request: web.Request) -> web.Response:
    reset()
    return web.Response(text="ok")


def main() -> None:
    reset()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/hook", hook)
    app.router.add_post("/bare", bare)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", clear)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
