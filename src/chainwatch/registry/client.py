"""The one registry client: packuments and tarballs over httpx, with retries and a cache."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from chainwatch import __version__
from chainwatch.errors import NotFoundError, OfflineMissError, RegistryError, UsageError
from chainwatch.registry.cache import Cache, ambiguous_integrity, sri_to_hex
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
    ) -> None:
        """Without ``transport``, every connection (tarball URLs come from the packument, a
        hostile document) goes through the egress guard: never link-local or metadata, and
        loopback or private only for the configured registries' hosts (``resolver`` is for
        tests)."""
        from chainwatch.paths import cache_dir as default_cache_dir

        self.config = config or NpmConfig.load()
        self.cache = Cache(cache_dir or default_cache_dir())
        self.offline = offline
        self._settings = (timeout, retries, backoff, transport, resolver)
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
                 resolver: SyncResolver | None) -> httpx.Client:
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
        return httpx.Client(
            transport=RetryTransport(transport=transport or vetted_sync_transport(
                self._trusted_hosts(), resolver or system_sync_resolver), retry=retry),
            timeout=httpx.Timeout(timeout, connect=10.0),
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
        """The full-format packument (``application/json``), revalidated by ETag and
        Last-Modified (conditional requests: an unchanged one costs a 304)."""
        url = packument_url(self.config.registry_for(name), name)
        cached = self.cache.get_doc(url)
        if self.offline:
            if cached is None:
                raise OfflineMissError(f"--offline: no cached packument for {name}")
            return cached[0]
        headers = {"Accept": "application/json"}
        if cached and cached[1]:
            headers["If-None-Match"] = cached[1]
        modified = self.cache.last_modified(url) if cached else None
        if modified:
            headers["If-Modified-Since"] = modified
        response = self._get(url, headers)
        if response.status_code == 304 and cached:
            return cached[0]
        if response.status_code == 404:
            raise NotFoundError(f"no such package in the registry: {name}")
        if response.status_code in (401, 403):
            raise UsageError(f"the registry refused access to {name} (HTTP {response.status_code})")
        if response.status_code >= 400:
            raise RegistryError(f"registry answered HTTP {response.status_code} for {name}")
        if len(response.content) > MAX_PACKUMENT_BYTES:
            raise RegistryError(f"packument of {name} is larger than {MAX_PACKUMENT_BYTES} bytes")
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise RegistryError(f"registry sent a packument that is not JSON for {name}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("versions", {}), dict):
            raise RegistryError(f"registry sent a malformed packument for {name}")
        self.cache.put_doc(url, response.content, response.headers.get("ETag"),
                           response.headers.get("Last-Modified"))
        return body

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
