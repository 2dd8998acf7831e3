"""A hostile registry in memory for the proxy attack tests.

Every request it receives (to any host: the upstream, a foreign tarball host, a metadata address)
is logged with the credentials that came with it, so a test can prove where a client's token went.
Packages are published with real gzipped tarballs whose integrity is computed from their bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from chainwatch.gate.check import Checker
from chainwatch.gate.policy import Policy
from chainwatch.gate.proxy import Proxy
from chainwatch.intel import BuiltinKnownBad
from tests.helpers import make_tgz, manifest

UPSTREAM = "https://upstream.test.invalid/"
OLD = (datetime.now(UTC) - timedelta(days=20)).isoformat()
#: What the fake DNS answers: loopback and documentation addresses, and a metadata address.
ADDRESSES = {"upstream.test.invalid": ["192.0.2.10"], "mirror.test.invalid": ["192.0.2.11"],
             "foreign.test.invalid": ["192.0.2.66"],
             "rebind.test.invalid": ["192.0.2.12", "169.254.169.254"],
             "metadata.test.invalid": ["169.254.169.254"]}


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


async def fake_resolver(host: str, port: int) -> list[str]:
    if host in ADDRESSES:
        return ADDRESSES[host]
    try:  # literal addresses resolve to themselves
        import ipaddress

        return [str(ipaddress.ip_address(host))]
    except ValueError:
        raise OSError(f"no such host: {host}") from None


@dataclass
class Seen:
    host: str
    path: str
    authorization: str | None
    scheme: str = "https"


@dataclass
class FakeRegistry:
    base: str = UPSTREAM
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    log: list[Seen] = field(default_factory=list)
    #: raw packument bodies served instead of ``docs`` (for malformed and huge ones)
    raw: dict[str, Callable[[], httpx.Response]] = field(default_factory=dict)

    def publish(self, name: str, version: str, files: dict[str, str] | None = None, *,
                data: bytes | None = None, published: str = OLD, url: str | None = None,
                dist: Any = ..., **extra: Any) -> dict[str, Any]:
        """Add a version with a real tarball (``files`` or raw ``data``), served at ``url``
        (default: the upstream's own ``/-/`` URL)."""
        short = name.rsplit("/", 1)[-1]
        blob = data if data is not None else make_tgz(
            {"package.json": manifest(name, version), **(files or {"index.js": "module.exports = 1;\n"})})
        where = url or f"{self.base}{name}/-/{short}-{version}.tgz"
        self.blobs[where] = blob
        if where.startswith("http://"):  # the same bytes over https (the proxy upgrades)
            self.blobs[where.replace("http://", "https://", 1)] = blob
        if where.startswith(("http://", "https://")):  # as httpx sends it (default port dropped)
            self.blobs[str(httpx.URL(where).copy_with(fragment=None))] = blob
        doc = self.docs.setdefault(name, {"name": name, "dist-tags": {}, "versions": {},
                                          "time": {"created": OLD, "modified": OLD}})
        entry: dict[str, Any] = {"name": name, "version": version, **extra}
        entry["dist"] = ({"tarball": where, "integrity": sri(blob),
                          "shasum": hashlib.sha1(blob).hexdigest()} if dist is ... else dist)
        doc["versions"][version] = entry
        doc["time"][version] = published
        doc["dist-tags"]["latest"] = version
        return entry

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.log.append(Seen(request.url.host, request.url.path,
                             request.headers.get("authorization"), request.url.scheme))
        url = str(request.url)
        if url in self.blobs:
            return httpx.Response(200, content=self.blobs[url])
        if request.url.host != httpx.URL(self.base).host:
            return httpx.Response(404, json={"error": "not here"})
        name = request.url.path.lstrip("/")
        if name in self.raw:
            return self.raw[name]()
        if name in self.docs:
            return httpx.Response(200, content=json.dumps(self.docs[name]).encode())
        return httpx.Response(404, json={"error": "Not found"})

    def credentials_seen(self) -> dict[str, set[str]]:
        """host -> every Authorization value that reached it."""
        out: dict[str, set[str]] = {}
        for seen in self.log:
            if seen.authorization:
                out.setdefault(seen.host, set()).add(seen.authorization)
        return out


def make_proxy(registry: FakeRegistry, checker: Checker | None = None,
               **kw: Any) -> Proxy:
    kw.setdefault("transport", httpx.MockTransport(registry))
    return Proxy(registry.base, checker or Checker(Policy(), None, BuiltinKnownBad()),
                 resolver=fake_resolver, **kw)


def serve(proxy: Proxy, *requests: tuple[str, str] | tuple[str, str, dict[str, str]],
          base_url: str = "http://proxy.test") -> list[httpx.Response]:
    """Requests in order against one proxy (its cache shared between them)."""

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy.app),
                                     base_url=base_url) as client:
            out = []
            for method, path, *rest in requests:
                headers = rest[0] if rest else {}
                out.append(await client.request(method, path, headers=headers))
            return out

    return asyncio.run(go())
