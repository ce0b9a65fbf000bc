"""Running plugins' long-running services (`guiche_services`): each in its own task,
restarted with backoff when it raises, all stopped by one `asyncio.Event`.

`guiche run` runs every service, `guiche worker` those declared `with_worker`, and
`guiche service <plugin>.<name>` one on its own (the scale-out shape).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from guiche.specs import ServiceSpec

if TYPE_CHECKING:
    from guiche.runtime.services import Services

log = logging.getLogger("guiche.services")

RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 60.0


class UnknownService(LookupError):
    """`guiche service NAME` names no installed service."""


def select_services(
    specs: Mapping[str, ServiceSpec],
    *,
    names: Iterable[str] | None = None,
    worker: bool = False,
) -> dict[str, ServiceSpec]:
    """The services one process runs: `names` (each must exist), else all of them, or
    with `worker` only those declared `with_worker`."""
    if names is not None:
        chosen = {}
        for name in names:
            if name not in specs:
                known = ", ".join(sorted(specs)) or "none installed"
                raise UnknownService(f"no service {name!r} (services: {known})")
            chosen[name] = specs[name]
        return chosen
    return {name: spec for name, spec in specs.items() if spec.with_worker or not worker}


async def supervise(
    name: str,
    spec: ServiceSpec,
    services: Services,
    stop: asyncio.Event,
    *,
    delay: float = RESTART_DELAY_SECONDS,
    max_delay: float = MAX_RESTART_DELAY_SECONDS,
) -> None:
    """Run one service until `stop`; a crash is logged and the service restarted after a
    doubling delay (reset once a run lasted longer than the delay)."""
    wait = delay
    while not stop.is_set():
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await spec.func(services, stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("service %s failed; restarting in %.1fs", name, wait)
        else:
            if stop.is_set():
                break
            log.warning("service %s returned before stop; restarting in %.1fs", name, wait)
        if loop.time() - started > wait * 2:
            wait = delay
        try:
            await asyncio.wait_for(stop.wait(), wait)
        except TimeoutError:
            pass
        wait = min(wait * 2, max_delay)
    log.info("service %s stopped", name)


async def run_services(
    services: Services, specs: Mapping[str, ServiceSpec], stop: asyncio.Event
) -> None:
    """Supervise every service in `specs` until `stop` is set."""
    if not specs:
        await stop.wait()
        return
    log.info("services started", extra={"services": sorted(specs)})
    await asyncio.gather(
        *(supervise(name, spec, services, stop) for name, spec in specs.items())
    )


__all__ = ["UnknownService", "run_services", "select_services", "supervise"]
