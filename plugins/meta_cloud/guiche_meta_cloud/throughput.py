"""Meta's per-number throughput, held across every worker with core's shared limiter.

Each send reserves one token from the bucket `meta_cloud:<phone_number_id>` (rate and
burst = the channel's messages per second) and sleeps once, until its own slot: with
many concurrent sends the slots are handed out 1/rate apart, so the rate is held without
a thundering herd of retries and without leaving tokens unused. A slot further away than
`max_wait` (a burst far above the rate, or other processes sending on the number) is not
taken; the send goes back to the outbound worker as a `RetryableSendError`, which
retries after `retry_after` without holding a worker.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from guiche.channels import RetryableSendError

#: Longest wait for a send slot inside one send before handing it back to the queue.
MAX_WAIT_SECONDS = 2.0


def bucket_key(phone_number_id: str) -> str:
    return f"meta_cloud:{phone_number_id}"


async def take_send_token(
    limiter: Any, phone_number_id: str, per_second: float, *, max_wait: float = MAX_WAIT_SECONDS
) -> None:
    """Reserve a send slot and sleep until it, or raise `RetryableSendError` if it is too far.

    A send cancelled while sleeping (its timeout, a worker shutting down) loses its
    slot: the number then sends slightly below its rate for that instant, never above.
    Without a limiter (an adapter built outside core) sends are not throttled here.
    """
    if limiter is None:
        return
    burst = max(1, math.floor(per_second))
    reservation = await limiter.reserve(
        bucket_key(phone_number_id), rate=per_second, burst=burst, max_wait=max_wait
    )
    if not reservation.allowed:
        raise RetryableSendError(
            f"throughput limit of {per_second:g} messages/s for this number reached",
            retry_after=reservation.retry_after,
            code="throughput_limited",
            details={"per_second": per_second},
        )
    if reservation.wait > 0:
        await asyncio.sleep(reservation.wait)
