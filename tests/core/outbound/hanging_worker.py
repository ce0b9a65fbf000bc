"""A real `guiche worker` process whose fake provider hangs inside `send`.

Run by test_outbox_recovery: it consumes the Redis task stream like any worker, claims
the outbox row, enters the adapter's `send`, announces that on a Redis list, and then
never returns, so the test can SIGKILL it mid-send. Configured by the environment
(`DATABASE_URL`, `REDIS_URL`, `GUICHE_*`), plus `HANGING_WORKER_MARKER`, the list key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from redis.asyncio import Redis

from guiche.channels import OutboundMessage, SendResult
from guiche.foundation.config import load_settings
from guiche.testing import FakeAdapter, FakeChannelPlugin
from guiche.worker import run_worker


class HangingPlugin(FakeChannelPlugin):
    """The fake channel (same plugin and type names), with a send that never finishes."""

    def __init__(self, redis_url: str, marker: str) -> None:
        super().__init__()
        base: type[FakeAdapter] = self.adapter_class

        class Adapter(base):  # type: ignore[valid-type, misc]
            async def send(self, message: OutboundMessage) -> SendResult:
                async with Redis.from_url(redis_url) as redis:
                    await redis.rpush(marker, str(message.message_id))
                await asyncio.Event().wait()  # mid-send, forever
                raise AssertionError("unreachable")

        self.adapter_class = Adapter


async def main() -> None:
    logging.basicConfig(level=logging.INFO)  # to the log file the test reads on failure
    settings = load_settings()
    assert settings.redis_url, "REDIS_URL is required"
    plugin = HangingPlugin(settings.redis_url, os.environ["HANGING_WORKER_MARKER"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await run_worker(settings, stop, extra_plugins=((plugin.name, plugin),))


if __name__ == "__main__":
    asyncio.run(main())
