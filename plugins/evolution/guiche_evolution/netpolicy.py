"""Which Evolution servers Guichê may call: the server URL is tenant-supplied, so it is
an SSRF vector into our own network unless checked.

Only http/https, and the host must not be (or resolve to) a loopback, private,
link-local, shared, reserved or cloud-metadata address — unless the operator sets
`GUICHE_EVOLUTION_ALLOW_PRIVATE=1` (an Evolution server beside Guichê on a private
network, or local tests). Literal IPs are checked when the config is validated; names
are resolved (off the event loop) before every call, so a name that later points
inside is refused too. Redirects are never followed by the HTTP client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from urllib.parse import urlsplit

ALLOW_PRIVATE_ENV = "GUICHE_EVOLUTION_ALLOW_PRIVATE"

#: Names that reach cloud metadata services whatever they resolve to.
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)

_TRUE = frozenset({"1", "true", "yes", "on"})


class TargetNotAllowed(ValueError):
    """The URL is not one Guichê may call."""


def private_targets_allowed() -> bool:
    """The operator's switch, read at call time (so tests and reloads see changes)."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in _TRUE


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """An IPv4 address smuggled inside IPv6 (mapped, 6to4, NAT64 well-known prefix)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Only globally routable unicast addresses (no loopback, private, link-local —
    169.254.169.254 is the metadata service —, shared, reserved or multicast)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            return address_allowed(inner)
    return ip.is_global and not ip.is_multicast


def split_target(url: str) -> tuple[str, str]:
    """(scheme, host) of an http(s) URL with a host, or `TargetNotAllowed`."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise TargetNotAllowed(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetNotAllowed("only http:// and https:// URLs are allowed")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise TargetNotAllowed("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetNotAllowed("credentials in the URL are not allowed; use the API key")
    return scheme, host


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_url_syntax(url: str) -> None:
    """The checks that need no DNS: scheme, host, metadata names, literal addresses."""
    _, host = split_target(url)
    if private_targets_allowed():
        return
    if host in METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
        raise TargetNotAllowed(f"{host} is an internal address")
    ip = _literal(host)
    if ip is not None and not address_allowed(ip):
        raise TargetNotAllowed(f"{host} is a loopback, private or link-local address")


async def check_target(url: str) -> None:
    """Every check, resolving names in a thread: raises `TargetNotAllowed`."""
    check_url_syntax(url)
    if private_targets_allowed():
        return
    _, host = split_target(url)
    if _literal(host) is not None:
        return
    try:
        addresses = await asyncio.to_thread(resolve, host)
    except (OSError, UnicodeError) as exc:
        raise TargetNotAllowed(f"cannot resolve {host}: {exc}") from None
    if not addresses:
        raise TargetNotAllowed(f"cannot resolve {host}")
    for address in addresses:
        ip = _literal(address.split("%", 1)[0])
        if ip is None or not address_allowed(ip):
            raise TargetNotAllowed(f"{host} resolves to a loopback, private or link-local address")


def resolve(host: str) -> list[str]:
    """Every address `host` resolves to (blocking: run it in a thread)."""
    infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]
