"""SSRF rules for receivers' URLs: a company's URL must not reach into our own network.

Refused unless the operator allows it (`GUICHE_WEBHOOKS_ALLOWED_NETWORKS`): loopback,
private, link-local, shared, reserved and multicast addresses; metadata addresses and
names always. `https://` only unless `GUICHE_WEBHOOKS_ALLOW_HTTP`. URLs are checked when
saved, and again on *every* connection: the delivery client's resolver
(`GuardedResolver`) refuses a name that resolves inside at that moment (DNS
rebinding), and literal addresses are checked before each request (aiohttp skips the
resolver for them). Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from guiche_webhooks.config import allowed_networks_value, http_allowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
     "instance-data.ec2.internal"}
)
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
     ipaddress.ip_address("100.100.100.200")}
)


class TargetRefused(OSError):
    """The URL (or what its name resolves to now) is not one Guichê may call."""


@lru_cache(maxsize=8)
def _networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for part in value.split(","):
        part = part.strip()
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                continue  # a typo allows nothing rather than everything
    return tuple(nets)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(ip: IPAddress) -> bool:
    """Public unicast, or inside a network the operator allowed; never metadata."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            return address_allowed(inner)
        ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
    if ip in METADATA_ADDRESSES:
        return False
    if ip.is_global and not ip.is_multicast:
        return True
    return any(ip in net for net in _networks(allowed_networks_value()))


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_url(url: str) -> None:
    """The checks that need no DNS (on save and before every request): raises
    `TargetRefused` with the reason."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise TargetRefused("only https:// URLs are accepted")
    if scheme == "http" and not http_allowed():
        raise TargetRefused("https:// is required")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise TargetRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("credentials in the URL are not accepted; the signature authenticates")
    if host in METADATA_HOSTS:
        raise TargetRefused(f"{host} is a metadata address")
    ip = _literal(host)
    if ip is not None:
        if not address_allowed(ip):
            raise TargetRefused(f"{host} is a loopback, private, link-local or metadata address")
    elif host == "localhost" or host.endswith(".localhost"):
        if not address_allowed(ipaddress.ip_address("127.0.0.1")):
            raise TargetRefused(f"{host} is a loopback address")


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing any answer outside the allowed addresses: the check
    runs on every resolution, so a name re-pointed inside (rebinding) is caught."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.rstrip(".").lower() in METADATA_HOSTS:
            raise TargetRefused(f"{host} is a metadata address")
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            ip = _literal(str(answer["host"]))
            if ip is None or not address_allowed(ip):
                raise TargetRefused(
                    f"{host} resolves to {answer['host']}, a loopback, private, link-local or"
                    " metadata address"
                )
        return answers

    async def close(self) -> None:
        await self._inner.close()


def refusal_of(exc: BaseException) -> TargetRefused | None:
    """The `TargetRefused` behind an exception the HTTP stack wrapped, if any."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, TargetRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def delivery_client(*, connections: int = 100) -> aiohttp.ClientSession:
    """The session deliveries go through: aiohttp with `GuardedResolver`, no DNS cache
    (every new connection resolves again), no proxies from the environment. (aiohttp's
    own API, not httpx over it: the httpx layer halved a worker's deliveries per second.)
    Create it inside the running loop; `close()` it."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(), use_dns_cache=False, limit=connections
    )
    return aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True)
