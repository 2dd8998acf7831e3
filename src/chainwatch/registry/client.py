"""The one registry client: packuments and tarballs over httpx, with retries and a cache."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import orjson

from chainwatch import __version__
from chainwatch.errors import (
    NotFoundError,
    OfflineMissError,
    RegistryError,
    RegistryServerError,
    UsageError,
)
from chainwatch.registry.cache import Cache, ambiguous_integrity, parse_json_object, sri_to_hex
from chainwatch.registry.npmrc import NpmConfig

if TYPE_CHECKING:  # httpx is imported with the first request: a scan of local files never asks
    import httpx

    from chainwatch.gate.egress import SyncResolver

#: Larger tarballs are refused before they are read into memory.
MAX_TARBALL_BYTES = 256 * 1024 * 1024
#: Larger packuments are refused (the largest real ones are a few tens of MB).
MAX_PACKUMENT_BYTES = 128 * 1024 * 1024
#: Larger attestation documents are refused (real ones are a few kB).
MAX_ATTESTATION_BYTES = 1024 * 1024
#: What the cache on disk (packuments and tarballs) may hold before the oldest files go.
DEFAULT_CACHE_MAX_BYTES = 4 * 1024 * 1024 * 1024


def cache_limit() -> int:
    """``CHAINWATCH_CACHE_MAX_MB`` in bytes when it is a positive whole number, else the
    default (a bad value must not turn the bound off)."""
    text = os.environ.get("CHAINWATCH_CACHE_MAX_MB", "").strip()
    return int(text) * 1024 * 1024 if text.isdigit() and int(text) > 0 else (
        DEFAULT_CACHE_MAX_BYTES)


@dataclass(frozen=True)
class Tarball:
    data: bytes
    #: None when the bytes match the registry's checksum, else what was wrong.
    integrity_error: str | None = None


def packument_url(registry: str, name: str) -> str:
    if name.startswith("@"):
        return registry + quote(name, safe="@")  # @scope%2fname, as npm sends it
    return registry + quote(name, safe="")


def check_integrity(data: bytes, integrity: str | None, shasum: str | None) -> str | None:
    """Compare bytes to ``dist.integrity`` (SRI) or the legacy ``dist.shasum``."""
    if integrity:
        ambiguous = ambiguous_integrity(integrity)
        if ambiguous:
            return f"the registry's integrity is ambiguous ({ambiguous})"
        parsed = sri_to_hex(integrity)
        if parsed is not None:
            algo, expected = parsed
            actual = hashlib.new(algo, data).hexdigest()
            if actual != expected:
                b64 = base64.b64encode(bytes.fromhex(actual)).decode()
                return f"{algo} is {algo}-{b64}, the registry says {integrity}"
            return None
    if shasum:
        actual = hashlib.sha1(data).hexdigest()
        if actual != shasum.lower():
            return f"sha1 is {actual}, the registry says {shasum}"
        return None
    return "the registry gives no integrity or shasum for this tarball"


class RegistryClient:
    def __init__(
        self,
        config: NpmConfig | None = None,
        cache_dir: Path | None = None,
        offline: bool = False,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        resolver: SyncResolver | None = None,
        packument_ttl: float = 0.0,
        cache_max_bytes: int | None = None,
        max_connections: int = 32,
    ) -> None:
        """``packument_ttl``: seconds a cached packument is used without asking the registry
        (0: always revalidated). ``cache_max_bytes``: the cache on disk is pruned to this when
        the client closes after writing to it (default ``CHAINWATCH_CACHE_MAX_MB``, else
        DEFAULT_CACHE_MAX_BYTES). Without ``transport``, every connection (tarball URLs come
        from the packument, a hostile document) goes through the egress guard: never link-local
        or metadata, and loopback or private only for the configured registries' hosts
        (``resolver`` is for tests)."""
        from chainwatch.paths import cache_dir as default_cache_dir

        self.config = config or NpmConfig.load()
        self.cache = Cache(cache_dir or default_cache_dir())
        self.offline = offline
        self.packument_ttl = packument_ttl
        self.cache_max_bytes = cache_max_bytes or cache_limit()
        self._settings = (timeout, retries, backoff, transport, resolver, max_connections)
        self._client: httpx.Client | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def _http(self) -> httpx.Client:
        """The HTTP client, made on first use (httpx, a TLS context and the egress guard cost
        ~0.1 s of a process's start); after :meth:`close` it refuses requests, as before."""
        with self._lock:
            if self._client is None:
                self._client = self._connect(*self._settings)
                if self._closed:
                    self._client.close()
            return self._client

    def _connect(self, timeout: float, retries: int, backoff: float,
                 transport: httpx.BaseTransport | None,
                 resolver: SyncResolver | None, max_connections: int) -> httpx.Client:
        import httpx
        from httpx_retries import Retry, RetryTransport

        from chainwatch.gate.egress import system_sync_resolver, vetted_sync_transport

        retry = Retry(
            total=retries,
            backoff_factor=backoff,
            max_backoff_wait=30.0,
            respect_retry_after_header=True,
            status_forcelist=[429, 500, 502, 503, 504],
            retry_on_exceptions=[httpx.TransportError],
        )
        # the pool's bound: the client's ``limits`` do not reach a transport it is given
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections)
        return httpx.Client(
            transport=RetryTransport(transport=transport or vetted_sync_transport(
                self._trusted_hosts(), resolver or system_sync_resolver, limits=limits),
                retry=retry),
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=limits,
            follow_redirects=True,
            headers={"User-Agent": f"chainwatch/{__version__}"},
        )

    def _trusted_hosts(self) -> list[str]:
        """The hosts of the registries the operator configured (default and scoped)."""
        hosts = []
        for url in (self.config.registry, *self.config.scoped.values()):
            try:
                host = urlsplit(url).hostname
            except ValueError:
                continue
            if host:
                hosts.append(host)
        return hosts

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._client is not None:
                self._client.close()
        if self.cache.written:
            # a cache that cannot be pruned now is pruned by a later run
            with contextlib.suppress(OSError):
                self.cache.prune(self.cache_max_bytes)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, url: str) -> dict[str, str]:
        auth = self.config.auth_header(url)
        return {"Authorization": auth} if auth else {}

    def _get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        import httpx

        try:
            response = self._http.get(url, headers={**self._headers(url), **headers})
        except httpx.TimeoutException as exc:
            raise RegistryError(f"registry timed out: {url} ({exc})") from exc
        except httpx.TransportError as exc:
            raise RegistryError(f"registry unreachable: {url} ({exc})") from exc
        return response

    def packument(self, name: str) -> dict[str, Any]:
        """The full-format packument; see ``_packument``."""
        return self._packument(name)[0]

    def slim_packument(self, name: str, revalidate: bool = False) -> dict[str, Any]:
        """``packument.slim_packument`` of the packument: what release analysis reads. While
        the packument is fresh (``packument_ttl``) the slim copy is read from the cache
        without parsing the full document; otherwise (or with ``revalidate``) as ``packument``
        and the slim copy is stored beside it."""
        from chainwatch.packument import slim_packument

        url = packument_url(self.config.registry_for(name), name)
        if not self.offline and self.packument_ttl > 0 and not revalidate:
            hit = self.cache.fresh_slim(url, self.packument_ttl)
            if hit is not None:
                return hit
        derived: list[dict[str, Any]] = []

        def derive(doc: dict[str, Any]) -> bytes | None:
            derived.append(slim_packument(doc))
            try:
                return orjson.dumps(derived[0])
            except TypeError:  # what orjson cannot write (integers beyond 64 bits): no copy
                return None

        body, sha = self._packument(name, derive, revalidate)
        if derived:  # a new body: its slim copy was stored with it
            return derived[0]
        slim = slim_packument(body)
        with contextlib.suppress(OSError, TypeError):  # a copy that cannot be stored: no copy
            self.cache.put_slim(url, sha, orjson.dumps(slim))
        return slim

    def _packument(self, name: str, derive: Callable[[dict[str, Any]], bytes | None] | None = None,
                   revalidate: bool = False) -> tuple[dict[str, Any], str]:
        """The full-format packument (``application/json``) and the digest of its bytes;
        ``derive`` makes the slim copy stored beside a new body. A cached copy the registry sent
        or confirmed less than ``packument_ttl`` seconds ago is used as it is; an older one is
        revalidated by ETag and Last-Modified (conditional requests: an unchanged one costs a
        304)."""
        url = packument_url(self.config.registry_for(name), name)
        cached = self.cache.doc_entry(url)
        body = cached.parse() if cached is not None else None
        if self.offline:
            if body is None:
                raise OfflineMissError(f"--offline: no cached packument for {name}")
            assert cached is not None
            return body, cached.sha256
        if cached is not None and body is not None and self.packument_ttl > 0 and not revalidate:
            age = cached.age()
            if age is not None and age < self.packument_ttl:
                return body, cached.sha256
        headers = {"Accept": "application/json"}
        if body is not None and cached is not None:
            if cached.etag:
                headers["If-None-Match"] = cached.etag
            if cached.last_modified:
                headers["If-Modified-Since"] = cached.last_modified
        fetched = time.time()
        response = self._get(url, headers)
        if response.status_code == 304 and body is not None and cached is not None:
            self.cache.revalidated(url, cached, response.headers.get("ETag"),
                                   response.headers.get("Last-Modified"), fetched)
            return body, cached.sha256
        if response.status_code == 404:
            raise NotFoundError(f"no such package in the registry: {name}")
        if response.status_code in (401, 403):
            raise UsageError(f"the registry refused access to {name} (HTTP {response.status_code})")
        if response.status_code >= 500:
            raise RegistryServerError(f"registry answered HTTP {response.status_code} for {name}")
        if response.status_code >= 400 or response.status_code == 304:
            raise RegistryError(f"registry answered HTTP {response.status_code} for {name}")
        if len(response.content) > MAX_PACKUMENT_BYTES:
            raise RegistryError(f"packument of {name} is larger than {MAX_PACKUMENT_BYTES} bytes")
        if (cached is not None and body is not None
                and hashlib.sha256(response.content).hexdigest() == cached.sha256):
            # a registry without validators sends the same bytes again: keep them, note when
            self.cache.revalidated(url, cached, response.headers.get("ETag"),
                                   response.headers.get("Last-Modified"), fetched)
            return body, cached.sha256
        fresh = parse_json_object(response.content)
        if fresh is None:
            raise RegistryError(f"registry sent a packument that is not a JSON object for {name}")
        if not isinstance(fresh.get("versions", {}), dict):
            raise RegistryError(f"registry sent a malformed packument for {name}")
        self.cache.put_doc(url, response.content, response.headers.get("ETag"),
                           response.headers.get("Last-Modified"), fetched,
                           derive(fresh) if derive is not None else None)
        return fresh, hashlib.sha256(response.content).hexdigest()

    def cached_packument(self, name: str) -> tuple[dict[str, Any], float | None] | None:
        """The cached packument whatever its age, and its age in seconds (None when unknown),
        without asking the registry: for a caller that could not reach it and says so."""
        url = packument_url(self.config.registry_for(name), name)
        cached = self.cache.doc_entry(url)
        body = cached.parse() if cached is not None else None
        if cached is None or body is None or not isinstance(body.get("versions", {}), dict):
            return None
        return body, cached.age()

    def attestations(self, name: str, url: str) -> dict[str, Any]:
        """The attestations document at a packument's ``dist.attestations.url``, cached (it
        never changes). Only fetched from the package's own registry: a packument may name any
        host, and that host must not see our token or be made to answer for the registry."""
        import httpx

        base = httpx.URL(self.config.registry_for(name))
        target = httpx.URL(url)
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise RegistryError(f"attestations of {name} are not on its registry: {url}")
        cached = self.cache.get_doc(url)
        if cached is not None:
            return cached[0]
        if self.offline:
            raise OfflineMissError(f"--offline: no cached attestations for {name}")
        response = self._get(url, {"Accept": "application/json"})
        if response.status_code == 404:
            raise NotFoundError(f"no attestations for {name} at {url}")
        if response.status_code >= 400:
            raise RegistryError(f"registry answered HTTP {response.status_code} for {url}")
        if len(response.content) > MAX_ATTESTATION_BYTES:
            raise RegistryError(f"attestations of {name} are larger than {MAX_ATTESTATION_BYTES} "
                                "bytes")
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise RegistryError(f"attestations of {name} are not JSON") from exc
        if not isinstance(body, dict):
            raise RegistryError(f"attestations of {name} are malformed")
        self.cache.put_doc(url, response.content, response.headers.get("ETag"))
        return body

    def tarball(self, url: str, integrity: str | None, shasum: str | None) -> Tarball:
        """Bytes of a tarball, checked against the registry's checksum; cached by content."""
        for token in (integrity, shasum and f"sha1-{base64.b64encode(bytes.fromhex(shasum)).decode()}"):
            if not token:
                continue
            parsed = sri_to_hex(token)
            if parsed:
                hit = self.cache.get_blob(*parsed)
                if hit is not None:
                    return Tarball(hit)
        if self.offline:
            raise OfflineMissError(f"--offline: tarball not in the cache: {url}")
        import httpx

        try:
            with self._http.stream("GET", url, headers=self._headers(url)) as response:
                if response.status_code == 404:
                    raise NotFoundError(f"tarball not found in the registry: {url}")
                if response.status_code >= 400:
                    raise RegistryError(f"registry answered HTTP {response.status_code} for {url}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_TARBALL_BYTES:
                        raise UsageError(f"tarball larger than {MAX_TARBALL_BYTES} bytes: {url}")
                    chunks.append(chunk)
        except httpx.TimeoutException as exc:
            raise RegistryError(f"registry timed out: {url} ({exc})") from exc
        except httpx.TransportError as exc:
            raise RegistryError(f"registry unreachable: {url} ({exc})") from exc
        data = b"".join(chunks)
        problem = check_integrity(data, integrity, shasum)
        if problem is None:
            self.cache.put_blob(data)
        return Tarball(data, problem)
