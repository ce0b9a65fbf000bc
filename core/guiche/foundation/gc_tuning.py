"""Garbage-collector settings for Guichê's long-running processes, applied once each is
started: `guiche web` and `guiche run` once serving, `guiche worker`, `guiche service`
and plugins' commands once their services are open.

Two workloads need them. A web process holds thousands of sockets; a worker imports
history in bulk (a page of a hundred ChatGuru messages is about a thousand dicts, a
batch of them thousands of objects that live until committed): with Python's defaults
the collector ran every few pages and walked what was queued each time, about a third
of the catalog's Python time (0.55 of raw COPY with them, 0.65 without, bench/README.md
"chatguru").

For sockets: CPython's cyclic collector stops the event loop while it runs, and a full
(generation-2) collection walks every tracked object: with 5,000 sockets that was
~860,000 objects and 0.5-0.8 s per collection, which pushed the fan-out p99 past 60 ms.
Two levers:

- `gc.freeze()` once the app is built (modules, classes, routes, plugins, pools): those
  objects live as long as the process, so full collections stop rescanning them.
  Frozen objects are never examined again, so anything frozen that later becomes
  *cyclic* garbage is never reclaimed (objects freed by reference counting still are).
  That is why only start-up state is frozen, not the sockets: a closed socket leaves
  reference cycles behind (aiohttp's own request handler, transport and response
  among them, ~30 objects per connection even in a bare aiohttp server), so freezing
  live sockets would leak every socket that later closes. `collect()` first, so
  start-up garbage is not frozen with them.
- a higher generation-0 threshold: collect the young generation every `gc_threshold`
  allocations instead of 700. Fewer young collections promote fewer short-lived
  objects (a webhook's in-flight request, an event being fanned out) into the old
  generation, and it is that promoted count that triggers full collections (CPython
  runs one when it exceeds a quarter of the old generation), so they become rare
  while the socket count is stable. Each young collection stays short (tens of
  thousands of objects, a few milliseconds).
"""

from __future__ import annotations

import gc
import logging

from guiche.foundation.config import Settings

log = logging.getLogger("guiche.gc")


def tune_after_startup(settings: Settings) -> None:
    """Apply `gc_threshold` and `gc_freeze`; call once the app is built and started."""
    if settings.gc_threshold:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(settings.gc_threshold, older, oldest)
    if settings.gc_freeze:
        gc.collect()
        gc.freeze()
    log.info(
        "garbage collector tuned",
        extra={"gc_threshold": gc.get_threshold(), "gc_frozen": gc.get_freeze_count()},
    )
