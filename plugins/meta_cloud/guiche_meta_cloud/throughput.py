"""Meta's per-number throughput, held across every worker with core's shared limiter.

Each send takes one token from the bucket `meta_cloud:<phone_number_id>` (rate and
burst = the channel's messages per second). A short wait is slept here; a longer one
(a burst far above the rate, or another process hogging the number) goes back to the
outbound worker as a `RetryableSendError`, which retries after `retry_after` without
holding a worker.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from guiche.channels import RetryableSendError

#: Longest total wait for a token inside one send before handing it back to the queue.
MAX_WAIT_SECONDS = 2.0


def bucket_key(phone_number_id: str) -> str:
    return f"meta_cloud:{phone_number_id}"


async def take_send_token(
    limiter: Any, phone_number_id: str, per_second: float, *, max_wait: float = MAX_WAIT_SECONDS
) -> None:
    """Wait for a send token, or raise `RetryableSendError` if that would take too long.

    Without a limiter (an adapter built outside core) sends are not throttled here.
    """
    if limiter is None:
        return
    burst = max(1, math.floor(per_second))
    waited = 0.0
    while True:
        decision = await limiter.acquire(bucket_key(phone_number_id), rate=per_second, burst=burst)
        if decision.allowed:
            return
        if waited + decision.retry_after > max_wait:
            raise RetryableSendError(
                f"throughput limit of {per_second:g} messages/s for this number reached",
                retry_after=decision.retry_after,
                code="throughput_limited",
                details={"per_second": per_second},
            )
        await asyncio.sleep(decision.retry_after)
        waited += decision.retry_after
