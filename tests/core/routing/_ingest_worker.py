"""A second app process for the routing concurrency test.

Runs the real app (fake channel plugin installed) on a free port of 127.0.0.1 with the
settings given as JSON in argv[1] (the test's database), prints `READY <port>` once it
serves, and shuts down cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import orjson
from aiohttp import web

from guiche.app import create_app
from guiche.foundation.config import Settings
from guiche.testing import FakeChannelPlugin


async def serve(settings: Settings) -> None:
    plugin = FakeChannelPlugin()
    app = create_app(settings, extra_plugins=((plugin.name, plugin),))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve(Settings(**orjson.loads(sys.argv[1]))))
