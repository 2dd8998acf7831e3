"""The filtering registry proxy: an npm-compatible registry in front of the real one.

Packuments are served (full, or abbreviated when the client asks for
``application/vnd.npm.install-v1+json``) with blocked versions removed, ``dist-tags`` moved to
the newest allowed version and tarball URLs pointing back at the proxy; a blocked tarball is
refused with 403 and a JSON error naming the rule. The client's Authorization header is passed
upstream. Decisions use the same policy and rules as ``chainwatch check``, are computed on every
request (so a cooled-down version appears by itself), and are logged and listed at
``/-/chainwatch/decisions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import anyio.to_thread
import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from chainwatch.gate.check import Checker
from chainwatch.names import valid_package_name
from chainwatch.registry.packument import slim_packument
from chainwatch.versions import parse, sort_versions

log = logging.getLogger("chainwatch.proxy")
ABBREVIATED = "application/vnd.npm.install-v1+json"
_CORGI_FIELDS = ("name", "version", "dependencies", "optionalDependencies", "devDependencies",
                 "bundleDependencies", "bundledDependencies", "peerDependencies",
                 "peerDependenciesMeta", "bin", "directories", "dist", "engines",
                 "_hasShrinkwrap", "hasInstallScript", "cpu", "os", "deprecated", "funding",
                 "libc", "license")
MAX_PACKUMENT = 128 * 1024 * 1024
#: Cached packuments are reused this long before upstream is asked again (with If-None-Match).
FRESH_SECONDS = 10.0
CACHE_BYTES = 256 * 1024 * 1024


def abbreviate(doc: dict[str, Any]) -> dict[str, Any]:
    """The abbreviated ("corgi") form npm asks for at install time."""
    times = doc.get("time") or {}
    return {"name": doc.get("name"), "modified": times.get("modified"),
            "dist-tags": doc.get("dist-tags") or {},
            "versions": {v: {k: d[k] for k in _CORGI_FIELDS if k in d}
                         for v, d in (doc.get("versions") or {}).items()}}


def package_from_path(raw_path: str) -> str | None:
    """``/@scope%2fname``, ``/@scope/name`` or ``/name`` → the package name, if valid."""
    name = unquote(raw_path.lstrip("/"))
    return name if valid_package_name(name) else None


class TooLarge(Exception):
    pass


@dataclass
class Cached:
    """One upstream packument: its bytes, the slim parsed form decisions read, and the
    bodies already rendered for a given set of hidden versions (re-used only when the
    decisions of this very request hide exactly that set)."""

    raw: bytes
    etag: str | None
    fetched: float
    slim: dict[str, Any]
    renders: dict[tuple[frozenset[str], bool, str], bytes] = field(default_factory=dict)
    logged: frozenset[tuple[str, str]] = frozenset()

    @property
    def weight(self) -> int:
        return 3 * len(self.raw) + sum(len(b) for b in self.renders.values())


class PackumentCache:
    """Upstream packuments with their renders, least recently used first out, bounded by their
    total weight (checked when a packument is stored or a render is added)."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], Cached] = OrderedDict()

    @property
    def size(self) -> int:
        return sum(e.weight for e in self._entries.values())

    def get(self, key: tuple[str, str]) -> Cached | None:
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
        return hit

    def put(self, key: tuple[str, str], entry: Cached) -> None:
        self._entries.pop(key, None)
        if entry.weight <= self.max_bytes:
            self._entries[key] = entry
        self.trim()

    def trim(self) -> None:
        """Drop the least recently used entries until the cache fits its bound."""
        total = self.size
        while total > self.max_bytes and self._entries:
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.weight

    def __len__(self) -> int:
        return len(self._entries)


def _error(status: int, message: str, **extra: str) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class Proxy:
    def __init__(self, upstream: str, checker: Checker, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 fresh_seconds: float = FRESH_SECONDS, cache_bytes: int = CACHE_BYTES,
                 max_packument: int = MAX_PACKUMENT) -> None:
        self.upstream = upstream.rstrip("/") + "/"
        self.checker = checker
        self.fresh_seconds = fresh_seconds
        self.max_packument = max_packument
        self.cache = PackumentCache(cache_bytes)
        self._flights: dict[tuple[str, str], asyncio.Lock] = {}
        self.decisions: deque[dict[str, Any]] = deque(maxlen=1000)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0),
                                      transport=transport, follow_redirects=True,
                                      limits=httpx.Limits(max_connections=256,
                                                          max_keepalive_connections=64))
        self.app = Starlette(routes=[
            Route("/-/chainwatch/health", self.health),
            Route("/-/chainwatch/decisions", self.list_decisions),
            Route("/{path:path}", self.route, methods=["GET", "HEAD"]),
        ], lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await self.http.aclose()

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "upstream": self.upstream,
                             "decisions": len(self.decisions), "cached_packuments": len(self.cache),
                             "cached_bytes": self.cache.size})

    async def list_decisions(self, request: Request) -> Response:
        return JSONResponse({"decisions": list(self.decisions)})

    def _auth(self, request: Request) -> dict[str, str]:
        auth = request.headers.get("authorization")
        return {"Authorization": auth} if auth else {}

    async def route(self, request: Request) -> Response:
        raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        if "/-/" in raw:
            name_part, _, file = raw.lstrip("/").partition("/-/")
            name = package_from_path(name_part)
            if name and file.endswith(".tgz") and "/" not in file and ".." not in file:
                return await self.tarball(request, name, file)
            return _error(404, "not served by the chainwatch proxy")
        name = package_from_path(raw)
        if name is None:
            return _error(400, "not a package name")
        return await self.packument(request, name)

    async def _fetch(self, name: str, request: Request,
                     etag: str | None) -> tuple[int, bytes, dict[str, str]]:
        """Status, body (read under the size limit) and headers of the upstream packument."""
        headers = {"Accept": "application/json", **self._auth(request)}
        if etag:
            headers["If-None-Match"] = etag
        req = self.http.build_request("GET", self.upstream + quote(name, safe="@"),
                                      headers=headers)
        response = await self.http.send(req, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_packument:
                raise TooLarge
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_packument:
                    raise TooLarge
                chunks.append(chunk)
            return response.status_code, b"".join(chunks), dict(response.headers)
        finally:
            await response.aclose()

    async def _entry(self, request: Request, name: str) -> tuple[Cached, bool] | Response:
        """The upstream packument (and whether it is served stale), or an error response.

        Concurrent requests for one packument wait for a single upstream fetch."""
        key = (name, hashlib.sha256(request.headers.get("authorization", "").encode()).hexdigest())
        lock = self._flights.setdefault(key, asyncio.Lock())
        async with lock:
            try:
                return await self._refresh(request, name, key)
            finally:
                # a request still waiting keeps its lock object; one arriving later makes a
                # new one (at worst a second fetch), so the table stays as small as the traffic
                self._flights.pop(key, None)

    async def _refresh(self, request: Request, name: str,
                       key: tuple[str, str]) -> tuple[Cached, bool] | Response:
        cached = self.cache.get(key)
        if cached is not None and time.monotonic() - cached.fetched < self.fresh_seconds:
            return cached, False
        try:
            status, raw, headers = await self._fetch(name, request,
                                                     cached.etag if cached else None)
        except TooLarge:
            return _error(502, f"upstream packument of {name} is larger than "
                               f"{self.max_packument} bytes")
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            if cached is not None:
                return cached, True
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
            return _error(504 if kind == "timed out" else 502,
                          f"upstream {kind}: {type(exc).__name__}: {exc}")
        if status == 304 and cached is not None:
            cached.fetched = time.monotonic()
            return cached, False
        if status != 200:
            if status >= 500 and cached is not None:
                return cached, True
            return Response(raw, status_code=status, media_type=headers.get("content-type"))
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(502, "upstream sent a packument that is not JSON")
        if not isinstance(doc, dict) or not isinstance(doc.get("versions", {}), dict):
            return _error(502, "upstream sent a malformed packument")
        entry = Cached(raw, headers.get("etag"), time.monotonic(), slim_packument(doc))
        self.cache.put(key, entry)
        return entry, False

    def _blocked(self, name: str, doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
        """version -> (rule, reason) for every version the policy blocks (stored verdicts only)."""
        out: dict[str, tuple[str, str]] = {}
        decided = self.checker.decide_all(name, list(doc.get("versions") or {}), doc)
        for version, found in decided.items():
            for action, rule, reason in found:
                if action == "block":
                    out[version] = (rule, reason)
                    break
        return out

    def _record(self, name: str, version: str | None, action: str, rule: str, reason: str) -> None:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "package": name,
                 "version": version, "action": action, "rule": rule, "reason": reason}
        self.decisions.append(entry)
        log.info("%s %s@%s %s: %s", action, name, version, rule, reason)

    async def packument(self, request: Request, name: str) -> Response:
        got = await self._entry(request, name)
        if isinstance(got, Response):
            return got
        entry, stale = got
        blocked = await anyio.to_thread.run_sync(self._blocked, name, entry.slim)
        shown = frozenset((v, rule) for v, (rule, _) in blocked.items())
        if shown != entry.logged:  # log what is hidden when it changes, not on every request
            for version, (rule, reason) in blocked.items():
                if (version, rule) not in entry.logged:
                    self._record(name, version, "hidden", rule, reason)
            entry.logged = shown
        wants_corgi = ABBREVIATED in request.headers.get("accept", "")
        render_key = (frozenset(blocked), wants_corgi, str(request.base_url))
        body = entry.renders.get(render_key)
        if body is None:
            body = await anyio.to_thread.run_sync(
                self._render, name, entry.raw, set(blocked), wants_corgi, render_key[2])
            if len(entry.renders) >= 4:
                entry.renders.clear()
            entry.renders[render_key] = body
            self.cache.trim()
        return Response(body, media_type=ABBREVIATED if wants_corgi else "application/json",
                        headers={"X-Chainwatch-Stale": "upstream unavailable"} if stale else None)

    @staticmethod
    def _render(name: str, raw: bytes, blocked: set[str], corgi: bool, base: str) -> bytes:
        """The packument as served: blocked versions removed, tags moved, tarballs via us."""
        doc = orjson.loads(raw)
        for version in blocked:
            doc["versions"].pop(version, None)
            (doc.get("time") or {}).pop(version, None)
        allowed = [v for v in reversed(sort_versions(doc["versions"]))
                   if (p := parse(v)) is not None and not p.prerelease]
        tags = doc.get("dist-tags") or {}
        for tag, version in list(tags.items()):
            if version in blocked or version not in doc["versions"]:
                if allowed:
                    tags[tag] = allowed[0]
                else:
                    del tags[tag]
        for data in doc["versions"].values():
            dist = data.get("dist") if isinstance(data, dict) else None
            if isinstance(dist, dict) and isinstance(dist.get("tarball"), str):
                tail = dist["tarball"].split("/-/", 1)
                if len(tail) == 2:
                    dist["tarball"] = f"{base}{quote(name, safe='@/')}/-/{tail[1]}"
        return orjson.dumps(abbreviate(doc) if corgi else doc)

    async def tarball(self, request: Request, name: str, file: str) -> Response:
        base = name.rsplit("/", 1)[-1]
        version = file[len(base) + 1 : -4] if file.startswith(f"{base}-") else None
        got = await self._entry(request, name)
        if isinstance(got, Response):
            return got
        doc = got[0].slim
        if version is None or version not in (doc.get("versions") or {}):
            return _error(404, f"unknown tarball {file}")
        decided = await anyio.to_thread.run_sync(
            lambda: self.checker.decide(name, version, doc, scan=True))
        for action, rule, reason in decided:
            if action == "block":
                self._record(name, version, "refused", rule, reason)
                return _error(403, f"chainwatch blocked {name}@{version}: {rule}: {reason}",
                              rule=rule)
        url = doc["versions"][version].get("dist", {}).get("tarball") or (
            f"{self.upstream}{quote(name, safe='@/')}/-/{file}")
        try:
            upstream = await self.http.send(self.http.build_request(
                "GET", url, headers=self._auth(request)), stream=True)
        except httpx.TimeoutException as exc:
            return _error(504, f"upstream timed out: {type(exc).__name__}: {exc}")
        except httpx.TransportError as exc:
            return _error(502, f"upstream unreachable: {type(exc).__name__}: {exc}")

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_bytes():
                    yield chunk
            finally:
                await upstream.aclose()

        headers = {k: v for k, v in upstream.headers.items()
                   if k.lower() in ("content-length", "etag", "last-modified")}
        return StreamingResponse(body(), status_code=upstream.status_code, headers=headers,
                                 media_type="application/octet-stream")
