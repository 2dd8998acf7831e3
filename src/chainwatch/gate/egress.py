"""Where the proxy may send requests, and where it may send the client's credentials.

A packument is written by whoever publishes to (or controls) the upstream registry, so its
``dist.tarball`` URLs are hostile input. Tarballs are fetched only from the upstream's own origin
or from hosts the operator lists (``--tarball-hosts``); the client's ``Authorization`` goes to
the upstream origin only; and whatever a name resolves to, addresses that are never a registry
(link-local, cloud metadata, multicast, unspecified, reserved) are refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from chainwatch.errors import RegistryError

#: Metadata services that are not link-local (Alibaba, AWS over IPv6 — which is ULA).
METADATA = frozenset({ipaddress.ip_address("100.100.100.200"),
                      ipaddress.ip_address("fd00:ec2::254")})

THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: host, port -> the addresses it resolves to (tests inject one that never asks DNS)
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


#: How long the proxy reuses a host's addresses before asking DNS again.
RESOLVE_SECONDS = 30.0
#: How long after that an answer is still used while a new one is asked for in the background.
RESOLVE_STALE = 300.0
#: Hosts whose addresses are kept (only the upstream and --tarball-hosts are ever resolved).
RESOLVE_ENTRIES = 256


class CachingResolver:
    """A resolver that asks ``inner`` once per host and port for ``ttl`` seconds, and makes
    concurrent lookups of one host wait for a single question.

    Without it the proxy asked DNS twice per tarball (the egress check, then the connection):
    a burst of parallel tarball GETs was a burst of lookups, and a resolver that drops a query
    in such a burst answers it only after its retransmission timeout (glibc: 5 s), which is
    what clients saw. An answer older than ``ttl`` (up to ``stale`` more) is still given while
    a new one is asked for in the background. Failures and empty answers are never kept. The
    address that is checked and the one connected to still come from the same answer (see
    ``VettedBackend``)."""

    def __init__(self, inner: Resolver = system_resolver, ttl: float = RESOLVE_SECONDS,
                 entries: int = RESOLVE_ENTRIES, stale: float = RESOLVE_STALE) -> None:
        self.inner = inner
        self.ttl = ttl
        self.stale = stale
        self.entries = entries
        self._known: OrderedDict[tuple[str, int], tuple[float, list[str]]] = OrderedDict()
        self._flights: dict[tuple[str, int], asyncio.Future[list[str]]] = {}
        #: lookups actually sent to ``inner``
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        key = (host.lower().rstrip("."), port)
        hit = self._known.get(key)
        age = time.monotonic() - hit[0] if hit is not None else None
        if hit is not None and age is not None and age < self.ttl:
            self._known.move_to_end(key)
            return list(hit[1])
        flight = self._flights.get(key)
        if flight is None or flight.get_loop() is not asyncio.get_running_loop():
            flight = asyncio.ensure_future(self._lookup(key, host, port))
            flight.add_done_callback(_retrieved)
            self._flights[key] = flight
        if hit is not None and age is not None and age < self.ttl + self.stale:
            # renewed in the background: a slow answer then delays nobody (the callers
            # vet these addresses as they vet a fresh answer)
            return list(hit[1])
        # shielded: a client that hangs up does not cancel the lookup others wait for
        return list(await asyncio.shield(flight))

    async def _lookup(self, key: tuple[str, int], host: str, port: int) -> list[str]:
        self.lookups += 1
        try:
            addresses = await self.inner(host, port)
        finally:
            self._flights.pop(key, None)
        if addresses:
            self._known[key] = (time.monotonic(), list(addresses))
            self._known.move_to_end(key)
            while len(self._known) > self.entries:
                self._known.popitem(last=False)
        return addresses


def _retrieved(flight: asyncio.Future[list[str]]) -> None:
    """A background renewal's failure is read (its callers, if any, see it themselves)."""
    if not flight.cancelled():
        flight.exception()


def forbidden_address(ip: IPAddress) -> str | None:
    """Why chainwatch never fetches from this address, or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            return forbidden_address(inner)
    if isinstance(ip, ipaddress.IPv4Address) and ip in THIS_NETWORK:
        return "a 0.0.0.0/8 address"
    if ip in METADATA:
        return "a cloud metadata address"
    for test, what in ((ip.is_link_local, "link-local (cloud metadata lives there)"),
                       (ip.is_multicast, "multicast"), (ip.is_unspecified, "unspecified"),
                       (ip.is_reserved, "reserved")):
        if test:
            return f"a {what} address"
    return None


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def origin_of(url: str) -> Origin | None:
    """The origin of an http(s) URL without user info, else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return Origin(parts.scheme, parts.hostname.lower().rstrip("."),
                  port or (443 if parts.scheme == "https" else 80))


def parse_host_entry(entry: str) -> Origin:
    """``host``, ``host:port`` or ``scheme://host[:port]`` (https when no scheme is given)."""
    text = entry.strip()
    found = origin_of(text if "://" in text else f"https://{text}")
    if found is None or not text:
        raise ValueError(f"not a host: {entry!r} (use host, host:port or https://host)")
    return found


class Egress:
    """The tarball-fetching and credential rules of one proxy."""

    def __init__(self, upstream: str, tarball_hosts: tuple[str, ...] = (),
                 resolver: Resolver = system_resolver) -> None:
        self.resolver = resolver
        found = origin_of(upstream)
        if found is None:
            raise ValueError(f"not an http(s) upstream URL: {upstream!r}")
        self.upstream = found
        self.allowed = frozenset({found, *(parse_host_entry(h) for h in tarball_hosts)})

    def upgrade(self, url: str) -> str:
        """An ``http://`` URL on the https upstream's host (old packuments have them) fetched
        over https instead: the same registry, never in plain text."""
        found = origin_of(url)
        up = self.upstream
        if (found is not None and up.scheme == "https" and found.scheme == "http"
                and found.host == up.host and found.port == 80):
            rest = url.split("://", 1)[1].split("/", 1)
            return f"https://{up.host}{'' if up.port == 443 else f':{up.port}'}/" + (
                rest[1] if len(rest) == 2 else "")
        return url

    def refusal(self, url: str) -> str | None:
        """Why the proxy will not fetch this tarball URL (before any lookup), or None."""
        found = origin_of(self.upgrade(url))
        if found is None:
            return "the tarball URL is not a plain http(s) URL"
        try:
            literal: IPAddress | None = ipaddress.ip_address(found.host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None and (why := forbidden_address(literal)):
            return f"the tarball URL points at {found.host}, {why}"
        if found not in self.allowed:
            return (f"the tarball is on {found}, which is neither the upstream nor a "
                    "--tarball-hosts entry")
        return None

    def credentials_for(self, url: str) -> bool:
        """Whether the client's credentials may go with a request to this URL."""
        return origin_of(url) == self.upstream

    async def resolved_refusal(self, url: str) -> str | None:
        """``refusal``, then the addresses the host resolves to (every one must be fine)."""
        why = self.refusal(url)
        if why is not None:
            return why
        found = origin_of(url)
        assert found is not None
        try:
            addresses = await self.resolver(found.host.strip("[]"), found.port)
        except OSError as exc:
            return f"cannot resolve {found.host}: {exc}"
        if not addresses:
            return f"{found.host} resolves to no address"
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if why := forbidden_address(ip):
                return f"{found.host} resolves to {ip}, {why}"
        return None


class VettedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses that pass ``forbidden_address``, and to exactly the address it
    vetted (no second lookup between the check and the connection, so DNS rebinding cannot
    slip a metadata address in). TLS still verifies the host name."""

    def __init__(self, resolver: Resolver = system_resolver,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.resolver(host.strip("[]"), port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            if why := forbidden_address(ipaddress.ip_address(address.split("%", 1)[0])):
                raise httpcore.ConnectError(f"{host} resolves to {address}, {why}")
        return await self.inner.connect_tcp(addresses[0], port, timeout, local_address,
                                            socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the proxy does not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def vetted_transport(limits: httpx.Limits, resolver: Resolver = system_resolver,
                     inner: httpcore.AsyncNetworkBackend | None = None,
                     ) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go through ``VettedBackend`` (httpx has no public
    way to pass a network backend, so its connection pool is replaced; covered by tests)."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    old = transport._pool
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=getattr(old, "_ssl_context", None),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=VettedBackend(resolver, inner))
    return transport


#: host, port -> the addresses it resolves to, for the blocking registry client
SyncResolver = Callable[[str, int], list[str]]


class EgressRefused(RegistryError):
    """A connection the guard refused: not retried (it is not a transport failure), one line."""


def system_sync_resolver(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def scan_refusal(ip: IPAddress, trusted: bool) -> str | None:
    """Why a scan may not connect to ``ip``: never where ``forbidden_address`` says, and to a
    loopback or private address only for a host the operator configured (``trusted``)."""
    if why := forbidden_address(ip):
        return why
    inner = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    seen = inner or ip
    if not trusted and (seen.is_loopback or seen.is_private):
        return ("a loopback or private address (allowed only for a registry the operator "
                "configured)")
    return None


class VettedSyncBackend(httpcore.NetworkBackend):
    """``VettedBackend`` for the blocking registry client (``scan``, ``check``, ``watch``):
    every connection, redirects included, goes to exactly the address that was vetted, so a
    name that resolves to a public address when checked and to a metadata or internal address
    when connecting (DNS rebinding) never reaches it. Hosts in ``trusted`` (the configured
    registries) may be loopback or private."""

    def __init__(self, trusted: Iterable[str] = (),
                 resolver: SyncResolver = system_sync_resolver,
                 inner: httpcore.NetworkBackend | None = None) -> None:
        self.trusted = frozenset(h.lower().rstrip(".").strip("[]") for h in trusted)
        self.resolver = resolver
        self.inner = inner or httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        name = host.strip("[]")
        try:
            addresses = self.resolver(name, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        trusted = name.lower().rstrip(".") in self.trusted
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if why := scan_refusal(ip, trusted):
                raise EgressRefused(f"refused to connect to {host}: it resolves to {address}, "
                                    f"{why}")
        return self.inner.connect_tcp(addresses[0], port, timeout, local_address,
                                      socket_options)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None,
                            ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("the registry client does not connect to unix sockets")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def vetted_sync_transport(trusted: Iterable[str] = (),
                          resolver: SyncResolver = system_sync_resolver,
                          inner: httpcore.NetworkBackend | None = None,
                          limits: httpx.Limits | None = None) -> httpx.HTTPTransport:
    """An httpx transport whose connections go through ``VettedSyncBackend`` (as
    ``vetted_transport``, the pool is replaced: httpx has no public way to pass a backend).
    ``limits`` bound its connections (a client's own ``limits`` do not reach a transport)."""
    transport = httpx.HTTPTransport(limits=limits) if limits else httpx.HTTPTransport()
    old = transport._pool
    transport._pool = httpcore.ConnectionPool(
        ssl_context=getattr(old, "_ssl_context", None),
        max_connections=getattr(old, "_max_connections", 100),
        max_keepalive_connections=getattr(old, "_max_keepalive_connections", 20),
        keepalive_expiry=getattr(old, "_keepalive_expiry", 5.0),
        network_backend=VettedSyncBackend(trusted, resolver, inner))
    return transport
