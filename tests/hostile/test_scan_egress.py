"""Tarball fetches of ``scan``/``check``/``watch`` go through the egress guard at connect time.

Before: the registry client connected wherever a tarball URL's host resolved at that moment;
only the proxy vetted the connected address. A packument naming a host that resolves to a
public address when checked and to the cloud metadata service (or an internal service) when
connecting made a scan fetch from there. Now every connection of the registry client resolves
once, vets every address (never link-local or metadata; loopback or private only for the
registries the operator configured) and connects to exactly that address.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpcore
import pytest

from chainwatch.errors import RegistryError
from chainwatch.gate.egress import EgressRefused, vetted_sync_transport
from chainwatch.registry import NpmConfig, RegistryClient
from tests.helpers import make_tgz, manifest

TGZ = make_tgz({"package/package.json": manifest("x")})
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(TGZ)).encode()
            + b"\r\nContent-Type: application/octet-stream\r\n\r\n" + TGZ)


class Rebinding:
    """Answers each host from its list of answers, one per lookup (the last one repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: dict[str, int] = {}

    def __call__(self, host: str, port: int) -> list[str]:
        n = self.asked.get(host, 0)
        self.asked[host] = n + 1
        if host not in self.answers:
            return [host]  # a literal address
        found = self.answers[host]
        return found[min(n, len(found) - 1)]


class Recording(httpcore.MockBackend):
    """Connects nowhere: records the address asked for and answers one canned response."""

    def __init__(self) -> None:
        super().__init__([RESPONSE])
        self.connected: list[str] = []

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        self.connected.append(host)
        return httpcore.MockStream([RESPONSE])


def _client(resolver: Rebinding, inner: Recording, trusted: tuple[str, ...] = ()
            ) -> RegistryClient:
    return RegistryClient(NpmConfig(registry="https://registry.example.com/"),
                          Path(tempfile.mkdtemp(prefix="cw-egress-")), retries=0,
                          transport=vetted_sync_transport(trusted, resolver, inner))


@pytest.mark.parametrize("rebound", ["169.254.169.254", "127.0.0.1", "10.0.0.5",
                                     "fd00:ec2::254", "::ffff:169.254.169.254"])
def test_a_name_rebound_between_two_fetches_is_refused(rebound: str) -> None:
    resolver = Rebinding({"cdn.example.com": [["93.184.216.34"], [rebound]]})
    inner = Recording()
    client = _client(resolver, inner)
    first = client.tarball("https://cdn.example.com/x/-/x-1.0.0.tgz", None, None)
    assert first.data == TGZ and inner.connected == ["93.184.216.34"]
    client._http.close()  # a new connection for the second fetch (the pool would reuse one)
    client = _client(resolver, inner)
    with pytest.raises(EgressRefused, match=f"resolves to {rebound}"):
        client.tarball("https://cdn.example.com/x/-/x-1.0.1.tgz", None, None)
    assert inner.connected == ["93.184.216.34"]  # never connected to the rebound address


def test_every_address_must_pass_not_only_the_first() -> None:
    inner = Recording()
    client = _client(Rebinding({"cdn.example.com": [["93.184.216.34", "169.254.169.254"]]}),
                     inner)
    with pytest.raises(EgressRefused):
        client.tarball("https://cdn.example.com/x/-/x-1.0.0.tgz", None, None)
    assert inner.connected == []


def test_a_configured_registry_may_be_internal() -> None:
    inner = Recording()
    client = _client(Rebinding({"npm.corp.example": [["10.1.2.3"]]}), inner,
                     trusted=("npm.corp.example",))
    assert client.tarball("https://npm.corp.example/x/-/x-1.0.0.tgz", None, None).data == TGZ
    assert inner.connected == ["10.1.2.3"]
    # but never the metadata service, configured or not
    client = _client(Rebinding({"npm.corp.example": [["169.254.169.254"]]}), inner,
                     trusted=("npm.corp.example",))
    with pytest.raises(EgressRefused):
        client.tarball("https://npm.corp.example/x/-/x-1.0.1.tgz", None, None)


class _Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        _Handler.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(TGZ)))
        self.end_headers()
        self.wfile.write(TGZ)


@pytest.fixture
def loopback() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Handler.seen = []
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_the_default_client_guards_real_connections(loopback: int, tmp_path: Any) -> None:
    # the configured registry is on loopback: allowed; a packument's tarball host that
    # resolves to the same loopback service is not
    resolver = Rebinding({"evil.example.com": [["127.0.0.1"]]})
    client = RegistryClient(NpmConfig(registry=f"http://127.0.0.1:{loopback}/"), tmp_path,
                            retries=0, resolver=resolver)
    ok = client.tarball(f"http://127.0.0.1:{loopback}/x/-/x-1.0.0.tgz", None, None)
    assert ok.data == TGZ and _Handler.seen == ["/x/-/x-1.0.0.tgz"]
    with pytest.raises(RegistryError, match="loopback or private"):
        client.tarball(f"http://evil.example.com:{loopback}/x/-/x-1.0.1.tgz", None, None)
    assert _Handler.seen == ["/x/-/x-1.0.0.tgz"]
