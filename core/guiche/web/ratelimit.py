"""The global request limit: settings.rate_limit_per_minute per caller, 429 beyond it.

A caller is the authenticated user (or API key) when there is one, else the client
address, so colleagues behind one office NAT do not share a budget once logged in.
Buckets live in Redis when it is configured, so every web process draws on the same
budget. Provider webhooks, health checks and metrics are never limited: a provider
retrying a burst or a monitoring probe must not be turned away.
"""

from __future__ import annotations

import functools
import ipaddress
import logging

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError

from guiche.auth.principal import PRINCIPAL_KEY
from guiche.foundation.errors import TooManyRequests
from guiche.runtime.services import services_of

log = logging.getLogger("guiche.web")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_exempt(path: str) -> bool:
    return (
        path.startswith("/webhooks/")
        or path in ("/health", "/metrics")
        or path.startswith("/health/")
    )


@functools.lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted)


def _address(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def client_ip(request: web.Request) -> str:
    """The client's address: the peer, or with settings.trusted_proxies, the nearest
    X-Forwarded-For hop that is not one of our proxies (the leftmost hops are whatever
    the client wrote, so they are never believed blindly)."""
    remote = request.remote or "unknown"
    trusted = _networks(tuple(services_of(request).settings.trusted_proxies))
    if not trusted:
        return remote
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
        if hop.strip()
    ]
    current = _address(remote)
    while current is not None and any(current in net for net in trusted) and hops:
        candidate = _address(hops.pop())
        if candidate is None:
            break
        current = candidate
    return str(current) if current is not None else remote


def client_bucket(request: web.Request) -> str:
    """The real client as a limit's key: its address (`client_ip`), IPv6 by /64 since one
    subscriber usually holds the whole prefix. Shared by every per-client limit."""
    ip = client_ip(request)
    address = _address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return ip


def rate_key(request: web.Request) -> str:
    """Whose budget a request spends: user, API key, or client (`client_bucket`)."""
    principal = request.get(PRINCIPAL_KEY)
    if principal is not None:
        if principal.user_id is not None:
            return f"user:{principal.user_id}"
        if principal.api_key_id is not None:
            return f"api_key:{principal.api_key_id}"
    return f"ip:{client_bucket(request)}"


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After auth (so the principal is known); 0 per minute disables the limit."""
    services = services_of(request)
    per_minute = services.settings.rate_limit_per_minute
    if per_minute <= 0 or is_exempt(request.path):
        return await handler(request)
    try:
        decision = await services.limiter.acquire(
            "http:" + rate_key(request), rate=per_minute / 60, burst=per_minute
        )
    except RedisError as exc:  # fail open: an outage of the limiter must not stop the API
        log.warning("request rate limiter unavailable (%r); request allowed", exc)
        return await handler(request)
    if not decision.allowed:
        raise TooManyRequests(
            "Too many requests; slow down",
            retry_after=decision.retry_after,
            details={"limit_per_minute": per_minute},
        )
    return await handler(request)
