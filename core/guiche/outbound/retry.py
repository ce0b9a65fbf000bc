"""Retry timing for sends: exponential backoff with full jitter, never sooner than asked.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads the retries
of many messages that failed together, e.g. when a provider throttled a whole burst.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    `retry_after` (the provider's own hint) wins when it is longer than the draw.
    """
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    delay = rand() * ceiling
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay
