"""A real Guichê process for the end-to-end test: `web` or `worker`, with the fake channel.

The fake channel plugin is not an installed entry point, so `guiche web` / `guiche worker`
cannot load it; this script builds the very same processes (`create_app` served by
aiohttp, `run_worker`) with the plugin passed in. Configuration is the environment, as
for the real commands (`DATABASE_URL`, `REDIS_URL`, `GUICHE_*`), plus `E2E_PROVIDER_URL`.

The plugin's adapter sends by POSTing the `OutboundMessage` JSON to `E2E_PROVIDER_URL`
(a stand-in provider the test runs) with this process's pid, and returns the provider
id the stand-in answers with. Every process installs it, so the test can tell which
process really sent.

`web` binds a free port of `GUICHE_HOST` and prints `READY <port>` once it serves;
both modes stop cleanly on SIGTERM.

Usage: python _app_process.py web|worker
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import httpx
from aiohttp import web

from guiche.app import create_app
from guiche.channels import OutboundMessage, RetryableSendError, SendResult
from guiche.foundation.config import Settings, load_settings
from guiche.foundation.logs import configure_logging
from guiche.testing import FakeAdapter, FakeChannelPlugin
from guiche.worker import run_worker

PROVIDER_ENV = "E2E_PROVIDER_URL"
PID_HEADER = "X-Sender-Pid"


class ReportingChannelPlugin(FakeChannelPlugin):
    """The fake channel (same plugin and type names), sending to the test's stand-in provider."""

    def __init__(self, provider_url: str) -> None:
        super().__init__()
        base: type[FakeAdapter] = self.adapter_class

        class Adapter(base):  # type: ignore[valid-type, misc]
            async def send(self, message: OutboundMessage) -> SendResult:
                http: httpx.AsyncClient = self.http
                try:
                    resp = await http.post(
                        provider_url,
                        content=message.model_dump_json(),
                        headers={"Content-Type": "application/json", PID_HEADER: str(os.getpid())},
                    )
                except httpx.TransportError as exc:
                    raise RetryableSendError(f"stand-in provider unreachable: {exc}") from exc
                resp.raise_for_status()
                return SendResult(provider_message_id=resp.json()["id"])

        self.adapter_class = Adapter


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_web(settings: Settings, plugin: Any) -> None:
    """`guiche web`'s app, on a free port so parallel test runs never collide."""
    stop = _stop_event()
    runner = web.AppRunner(create_app(settings, extra_plugins=((plugin.name, plugin),)))
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, 0)
        await site.start()
        print(f"READY {runner.addresses[0][1]}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


async def main(mode: str) -> None:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    plugin = ReportingChannelPlugin(os.environ[PROVIDER_ENV])
    if mode == "web":
        await serve_web(settings, plugin)
    elif mode == "worker":
        await run_worker(settings, _stop_event(), extra_plugins=((plugin.name, plugin),))
    else:
        raise SystemExit(f"unknown mode {mode!r}: use web or worker")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
