"""A real `guiche worker` process for the kill -9 test: drives campaigns and sends.

Its fake provider records every accepted send on a Redis list (`CAMPAIGN_WORKER_SENT`,
the phone), the outside world's own ledger, which outlives the process the test kills.
Configured by the environment (`DATABASE_URL`, `REDIS_URL`, `GUICHE_*`).
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


class RecordingPlugin(FakeChannelPlugin):
    """The fake channel (same names as the test's), recording sends on Redis."""

    def __init__(self, redis_url: str, key: str) -> None:
        super().__init__()
        base: type[FakeAdapter] = self.adapter_class

        class Adapter(base):  # type: ignore[valid-type, misc]
            async def send(self, message: OutboundMessage) -> SendResult:
                async with Redis.from_url(redis_url) as redis:
                    await redis.rpush(key, message.to.phone or "")
                return SendResult(provider_message_id=f"fake.{message.message_id.hex}")

        self.adapter_class = Adapter


async def main() -> None:
    logging.basicConfig(level=logging.INFO)
    settings = load_settings()
    assert settings.redis_url, "REDIS_URL is required"
    plugin = RecordingPlugin(settings.redis_url, os.environ["CAMPAIGN_WORKER_SENT"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await run_worker(settings, stop, extra_plugins=((plugin.name, plugin),))


if __name__ == "__main__":
    asyncio.run(main())
