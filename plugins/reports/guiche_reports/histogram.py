"""Histograms of times as packed integers: merged by one addition, read by bisection.

A time falls in bucket `floor(log_1.02(1 + s))`: buckets grow by 2%, and a percentile read
from a histogram (the middle of the bucket holding the exact nearest-rank value) is within
1% of the exact one.

Stored form (`bytea`): the first bucket's index (2 bytes, little-endian), then one
unsigned 32-bit little-endian count per bucket up to the last non-empty one. Read back as
a Python integer (`packed`: bucket `b`'s count in bits `32*b .. 32*b+31`), histograms merge
by plain integer addition — element-wise, at C speed, whatever their bucket ranges —
because no bucket's count reaches 2**32 (that would take four billion conversations in
one bucket of one group), so no addition carries from one slot into the next.
"""

from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_left
from itertools import accumulate

BUCKET_BASE = 1.02
"""Histogram buckets grow by 2%: percentiles read from rollups are within 1% of exact."""

_LOG_BASE = math.log(BUCKET_BASE)
_SLOT_BITS = 32


def bucket(seconds: float) -> int:
    """The histogram bucket of a time: `floor(log_1.02(1 + s))`."""
    return math.floor(math.log1p(max(seconds, 0.0)) / _LOG_BASE)


def bucket_value(index: int) -> float:
    """A bucket's representative time: the middle of its range."""
    low = BUCKET_BASE**index - 1
    high = BUCKET_BASE ** (index + 1) - 1
    return (low + high) / 2


def _counts(data: bytes) -> array[int]:
    counts = array("I")
    counts.frombytes(data)
    if sys.byteorder == "big":  # pragma: no cover - the stored form is little-endian
        counts.byteswap()
    return counts


def encode(histogram: dict[int, int]) -> bytes | None:
    """The stored form of `{bucket: count}` (None when empty)."""
    if not histogram:
        return None
    low, high = min(histogram), max(histogram)
    counts = array("I", bytes(4 * (high - low + 1)))
    for index, n in histogram.items():
        counts[index - low] = n
    if sys.byteorder == "big":  # pragma: no cover
        counts.byteswap()
    return low.to_bytes(2, "little") + counts.tobytes()


def packed(stored: bytes | None) -> int:
    """A stored histogram as one integer (0 for none): add two to merge them."""
    if not stored:
        return 0
    low = int.from_bytes(stored[:2], "little")
    return int.from_bytes(stored[2:], "little") << (_SLOT_BITS * low)


def packed_counts(histogram: dict[int, int]) -> int:
    """`{bucket: count}` as a packed integer; counts may be negative (a delta to add to a
    stored histogram: the sum is exact as long as no resulting count is below 0)."""
    return sum(n << (_SLOT_BITS * index) for index, n in histogram.items() if n)


def encode_packed(value: int) -> bytes | None:
    """The stored form of a packed (merged) histogram."""
    if value == 0:
        return None
    low = ((value & -value).bit_length() - 1) // _SLOT_BITS
    body = value >> (_SLOT_BITS * low)
    slots = -(-body.bit_length() // _SLOT_BITS)
    return low.to_bytes(2, "little") + body.to_bytes(4 * slots, "little")


def percentiles(value: int, fractions: tuple[float, ...]) -> list[float | None]:
    """Nearest-rank percentiles of a packed histogram, each as its bucket's middle."""
    if value == 0:
        return [None] * len(fractions)
    low = ((value & -value).bit_length() - 1) // _SLOT_BITS  # empty buckets below: skipped
    body = value >> (_SLOT_BITS * low)
    slots = -(-body.bit_length() // _SLOT_BITS)
    cumulative = list(accumulate(_counts(body.to_bytes(4 * slots, "little"))))
    total = cumulative[-1]
    return [
        bucket_value(low + bisect_left(cumulative, max(1, math.ceil(f * total)))) for f in fractions
    ]


def percentile(histogram: dict[int, int], fraction: float) -> float | None:
    """Nearest-rank percentile of a `{bucket: count}` histogram."""
    return percentiles(packed(encode(histogram)), (fraction,))[0]
