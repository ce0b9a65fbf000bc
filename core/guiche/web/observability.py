"""Request context, access logs, Prometheus metrics and health checks.

Every request gets an id (the caller's `X-Request-ID` when it looks sane), echoed in
the response and carried by every log line written while serving it. Metrics label
requests by the route's template (`/api/v1/contacts/{id}`), never the raw path, so a
scan of random URLs cannot blow up the number of time series.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from guiche.auth.principal import PRINCIPAL_KEY
from guiche.foundation.errors import ServiceUnavailable
from guiche.foundation.jsonio import json_response
from guiche.foundation.logs import bound_context
from guiche.runtime.services import services_of

access_log = logging.getLogger("guiche.access")
log = logging.getLogger("guiche.web")

REQUEST_ID_KEY = web.RequestKey("guiche.request_id", str)
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PROBE_PATHS = ("/health", "/metrics")
UNMATCHED_ROUTE = "<unmatched>"
CHECK_TIMEOUT_SECONDS = 2.0
STORAGE_REPORT_SECONDS = 30.0
_STORAGE_REPORT_KEY = "storage_report"


@dataclass(frozen=True)
class HttpMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram


METRICS = web.AppKey("guiche.metrics", HttpMetrics)


def _new_metrics() -> HttpMetrics:
    """A registry per app: tests build many apps in one process without name clashes."""
    registry = CollectorRegistry(auto_describe=True)
    requests = Counter(
        "guiche_http_requests",
        "HTTP requests served, by method, route template and status.",
        ("method", "route", "status"),
        registry=registry,
    )
    latency = Histogram(
        "guiche_http_request_duration_seconds",
        "Time to serve an HTTP request, by method and route template.",
        ("method", "route"),
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    )
    return HttpMetrics(registry, requests, latency)


def route_template(request: web.Request) -> str:
    """The matched resource's canonical path (`/api/v1/contacts/{id}`), or a fixed label."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def request_id_of(request: web.Request) -> str | None:
    return request.get(REQUEST_ID_KEY)


def _who(request: web.Request) -> Mapping[str, str | None]:
    principal = request.get(PRINCIPAL_KEY)
    if principal is None:
        return {}
    user = principal.user_id or principal.api_key_id
    return {
        "tenant": str(principal.tenant_id),
        "user": f"api_key:{user}" if principal.kind == "api_key" else str(user),
    }


@web.middleware
async def request_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: bind the request id and principal to logs, then count and log the request."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    request[REQUEST_ID_KEY] = request_id
    started = time.perf_counter()
    status = 500
    with bound_context(request_id=request_id, resolver=lambda: _who(request)):
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status  # a redirect or a pre-shaped error passed up as is
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away before we answered
            raise
        finally:
            _record(request, status, time.perf_counter() - started)


def _record(request: web.Request, status: int, seconds: float) -> None:
    route = route_template(request)
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    metrics = request.app.get(METRICS)
    if metrics is not None:
        metrics.requests.labels(method, route, str(status)).inc()
        metrics.latency.labels(method, route).observe(seconds)
    level = logging.DEBUG if request.path.startswith(_PROBE_PATHS) else logging.INFO
    access_log.log(
        level,
        "%s %s %s %.1fms",
        request.method,
        request.path,
        status,
        seconds * 1000,
        extra={
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        },
    )


async def _stamp_request_id(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Set on every response just before it is sent: errors and streams included."""
    request_id = request.get(REQUEST_ID_KEY)
    if request_id is not None:
        response.headers["X-Request-ID"] = request_id


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers. Touches nothing else, so a slow database never
    gets a healthy process restarted."""
    return json_response({"status": "ok"})


async def _check(name: str, probe: Callable[[], Awaitable[Any]]) -> tuple[str, dict[str, Any]]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await probe()
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness check %s failed: %r", name, exc)
        error = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        return name, {"status": "error", "error": error}
    return name, {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def ready(request: web.Request) -> web.Response:
    """Readiness: the database (and Redis, when configured) answer within a short time.
    The answer also says how `messages` is stored and what is wrong with it
    (`storage_report`: flavor, chunk interval, compression, its policy's last run)."""
    services = services_of(request)

    async def database() -> None:
        if services.db.pool is None:
            raise ConnectionError("connection pool not started")
        await services.db.pool.fetchval("SELECT 1")

    probes: dict[str, Callable[[], Awaitable[Any]]] = {"database": database}
    redis = services.redis
    if redis is not None:
        probes["redis"] = redis.ping
    checks = dict(await asyncio.gather(*(_check(name, probe) for name, probe in probes.items())))
    storage = services.extras.get("storage_flavor")
    failed = [name for name, check in checks.items() if check["status"] != "ok"]
    if failed:
        raise ServiceUnavailable(
            f"Not ready: {', '.join(failed)} unavailable",
            code="not_ready",
            details={"failed": failed, "checks": checks, "storage": storage},
        )
    report = await _storage_report(services)
    return json_response(
        {"status": "ok", "checks": checks, "storage": storage, "storage_report": report}
    )


async def _storage_report(services: Any) -> dict[str, Any]:
    """`guiche.database.timescale.storage_report()`, computed at most every STORAGE_REPORT_SECONDS
    (probes are frequent; the policy's runs are daily). Its failure never fails readiness."""
    from guiche.database.timescale import storage_report

    cached = services.extras.get(_STORAGE_REPORT_KEY)
    now = time.monotonic()
    if cached is not None and now - cached[0] < STORAGE_REPORT_SECONDS:
        return cached[1]
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            async with services.db.pool.acquire() as conn:
                report = await storage_report(conn)
    except Exception as exc:  # reported, not raised: the app serves whatever this says
        log.warning("storage report failed: %r", exc)
        return {"error": "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__}
    services.extras[_STORAGE_REPORT_KEY] = (now, report)
    return report


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text: this app's HTTP metrics plus the process-wide default registry
    (process stats and counters other modules register there, e.g. plugin hook failures)."""
    body = generate_latest(request.app[METRICS].registry) + generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_observability(app: web.Application) -> None:
    app[METRICS] = _new_metrics()
    app.on_response_prepare.append(_stamp_request_id)
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
