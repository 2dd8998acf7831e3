"""The filtering registry proxy: an npm-compatible registry in front of the real one.

Packuments are served (full, or abbreviated when the client asks for
``application/vnd.npm.install-v1+json``) with blocked versions removed, ``dist-tags`` moved to
the newest allowed version and tarball URLs pointing back at the proxy; a blocked tarball is
refused with 403 and a JSON error naming the rule. The client's Authorization header goes to the
upstream origin only; tarballs are fetched only from the upstream or the operator's
``--tarball-hosts`` (see ``egress``), and a version that cannot be served through the proxy is
hidden with its reason (see ``servable``). Decisions use the same policy and rules as ``chainwatch
check``, are computed on every request (so a cooled-down version appears by itself), and are
logged and listed at ``/-/chainwatch/decisions``. Everything buffered draws on one
``MemoryBudget``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import re
import threading
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
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from chainwatch.gate.budget import (
    PARSE_FACTOR,
    BudgetExceeded,
    Hold,
    MemoryBudget,
    YieldToOlder,
)
from chainwatch.gate.check import Checker
from chainwatch.gate.decisions import DecisionLog, Recorded
from chainwatch.gate.egress import (
    CachingResolver,
    Egress,
    Resolver,
    system_resolver,
    vetted_transport,
)
from chainwatch.gate.servable import unservable
from chainwatch.packument import slim_packument
from chainwatch.specs import redact_credentials
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
#: An entry's raw bytes and its slim parsed form, per raw byte (an estimate, rounded up).
ENTRY_FACTOR = 3
#: How long a request waits for room in the memory budget before it is answered 503.
BUDGET_WAIT = 120.0
#: Redirects followed (each hop checked like the first URL).
MAX_REDIRECTS = 5
#: Seconds an upstream packument may take in all, however steadily its bytes trickle in.
PACKUMENT_DEADLINE = 60.0
#: Names the registry accepts today plus the legacy ones it still serves (capitals and
#: ``~'!()*`` before 2017, e.g. ``JSONStream``); never ``.``/``_`` first, never a path.
_NAME = re.compile(r"^(?:@[a-z0-9~-][a-z0-9._~-]*/)?[A-Za-z0-9~-][A-Za-z0-9._~!*'()-]*$")


def abbreviate(doc: dict[str, Any]) -> dict[str, Any]:
    """The abbreviated ("corgi") form npm asks for at install time."""
    times = doc.get("time")
    times = times if isinstance(times, dict) else {}
    versions = doc.get("versions") or {}
    out: dict[str, Any] = {"name": doc.get("name")}
    # never "modified": null (bun refuses the document: PackageFailedToParse); when upstream
    # gave no time, the newest publish time of a listed version, else no field at all
    modified = times.get("modified")
    if not isinstance(modified, str):
        stamps = [t for v, t in times.items() if v in versions and isinstance(t, str)]
        modified = max(stamps) if stamps else None
    if modified is not None:
        out["modified"] = modified
    out["dist-tags"] = doc.get("dist-tags") or {}
    out["versions"] = {v: {k: d[k] for k in _CORGI_FIELDS if k in d}
                       for v, d in versions.items()}
    return out


def package_from_path(raw_path: str) -> str | None:
    """``/@scope%2fname``, ``/@scope/name`` or ``/name`` → the package name, if valid."""
    name = unquote(raw_path.lstrip("/"))
    return name if len(name) <= 214 and _NAME.match(name) else None


def loopback_host(host: str) -> bool:
    """Whether a --listen host is reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TooLarge(Exception):
    pass


#: how long one packument's decisions are reused while nothing this process knows changed
#: (min-age and the 5 s snapshots of the databases move slower than this)
DECIDED_SECONDS = 1.0


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
    #: whether the cache holds it (and so counts it in the memory budget)
    cached: bool = False
    #: the last decisions on it: (time.monotonic(), what they depended on, hidden versions)
    decided: tuple[float, Any, dict[str, tuple[str, str]]] | None = None

    @property
    def weight(self) -> int:
        return ENTRY_FACTOR * len(self.raw) + sum(len(b) for b in self.renders.values())


class PackumentCache:
    """Upstream packuments with their renders, least recently used first out, bounded by their
    total weight (checked when a packument is stored or a render is added)."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], Cached] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()  # scan workers shrink it through the memory budget

    @property
    def size(self) -> int:
        return self._size

    def get(self, key: tuple[str, str]) -> Cached | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
            return hit

    def put(self, key: tuple[str, str], entry: Cached) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                old.cached = False
            if entry.weight <= self.max_bytes:
                self._entries[key] = entry
                entry.cached = True
        self.trim()

    def trim(self, limit: int | None = None) -> None:
        """Drop the least recently used entries until the cache fits its bound (or ``limit``,
        when the memory budget needs the room); entries' weights grow as renders are added."""
        bound = self.max_bytes if limit is None else min(limit, self.max_bytes)
        with self._lock:
            total = sum(e.weight for e in self._entries.values())
            while total > bound and self._entries:
                _, dropped = self._entries.popitem(last=False)
                dropped.cached = False
                total -= dropped.weight
            self._size = total

    def __len__(self) -> int:
        return len(self._entries)


def _error(status: int, message: str, **extra: str) -> JSONResponse:
    """A JSON error for the client; a credential of the upstream URL never appears in it."""
    return JSONResponse({"error": redact_credentials(message), **extra}, status_code=status)


class Refused(Exception):
    """An upstream URL the proxy will not fetch (the reason is the message)."""


class Proxy:
    def __init__(self, upstream: str, checker: Checker, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 fresh_seconds: float = FRESH_SECONDS, cache_bytes: int = CACHE_BYTES,
                 max_packument: int = MAX_PACKUMENT, *, tarball_hosts: tuple[str, ...] = (),
                 public_url: str | None = None, token: str | None = None,
                 open_decisions: bool = True, budget: MemoryBudget | None = None,
                 budget_wait: float = BUDGET_WAIT, resolver: Resolver | None = None,
                 decision_log: DecisionLog | None = None) -> None:
        """``public_url`` is the base of every rewritten tarball URL (else the request's own
        base URL, for in-process use); ``token`` guards the decisions endpoint, which without
        one is open only when ``open_decisions`` (the proxy listens on loopback);
        ``decision_log`` keeps what is hidden or refused in the database (written by its own
        thread, once per package, version, rule and period)."""
        self.upstream = upstream.rstrip("/") + "/"
        # one DNS question per host and 30 s, shared by the egress check and the connection
        # (a lookup per tarball stalled parallel downloads on the resolver's 5 s retry)
        self.resolver = CachingResolver(resolver or system_resolver)
        self.egress = Egress(self.upstream, tarball_hosts, self.resolver)
        self.checker = checker
        self.fresh_seconds = fresh_seconds
        self.max_packument = max_packument
        self.public_url = public_url.rstrip("/") + "/" if public_url else None
        self.token = token
        self.open_decisions = open_decisions
        self.cache = PackumentCache(cache_bytes)
        self.budget = budget or MemoryBudget()
        self.budget.attach_cache(lambda: self.cache.size, self.cache.trim)
        self.budget_wait = budget_wait
        if checker.scans is not None:  # scans draw on the same budget, fetch where we do
            checker.scans.budget = checker.scans.budget or self.budget
            checker.scans.url_guard = checker.scans.url_guard or self.egress.refusal
        self._flights: dict[tuple[str, str], asyncio.Lock] = {}
        self.decisions: deque[dict[str, Any]] = deque(maxlen=1000)
        self.decision_log = decision_log
        #: what was last logged as hidden per package: kept apart from the cache entry, which
        #: a refetch or the other (abbreviated/full) document replaces; bounded
        self._logged: OrderedDict[str, frozenset[tuple[str, str]]] = OrderedDict()
        # redirects are followed by hand (``_send``): every hop is checked like the first URL
        # connections only to vetted addresses (link-local and metadata never, whatever DNS
        # says at connect time); through an HTTPS_PROXY from the environment, the address
        # checks before each request still apply, the proxy makes the connection
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0),
                                      transport=transport or vetted_transport(
                                          limits, self.resolver),
                                      follow_redirects=False)
        self.app = Starlette(routes=[
            Route("/-/chainwatch/health", self.health),
            Route("/-/chainwatch/decisions", self.list_decisions),
            Route("/{path:path}", self.route, methods=["GET", "HEAD"]),
        ], lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.http.aclose()
            if self.decision_log is not None:  # what is queued is written (1 s at most:
                # a signal gives the whole shutdown 1.5 s)
                await anyio.to_thread.run_sync(self.decision_log.close, 1.0)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "upstream": str(self.egress.upstream),
                             "decisions": len(self.decisions), "cached_packuments": len(self.cache),
                             "cached_bytes": self.cache.size,
                             "budget": {"total": self.budget.total, "used": self.budget.used,
                                        "peak": self.budget.peak,
                                        "refused": self.budget.refused}})

    async def list_decisions(self, request: Request) -> Response:
        if self.token is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _error(401, "the decisions endpoint needs the proxy's token "
                                   "(Authorization: Bearer …)")
        elif not self.open_decisions:
            return _error(403, "the proxy listens beyond loopback: set CHAINWATCH_PROXY_TOKEN "
                               "or --token-file to read decisions")
        return JSONResponse({"decisions": list(self.decisions)})

    def _auth(self, request: Request, url: str) -> dict[str, str]:
        """The client's credentials, for the upstream origin only."""
        auth = request.headers.get("authorization")
        return {"Authorization": auth} if auth and self.egress.credentials_for(url) else {}

    async def route(self, request: Request) -> Response:
        """One request, with what it holds of the memory budget released once the answer is
        sent (a packument body in flight is memory too)."""
        hold = Hold(self.budget, self.budget_wait)
        try:
            response = await self._route(request, hold)
        except BudgetExceeded as exc:
            hold.release()
            return _error(503, f"chainwatch proxy busy: {exc}")
        except Exception as exc:  # never a traceback to the client; fail closed
            hold.release()
            log.exception("error serving %s", request.url.path)
            return _error(502, f"chainwatch could not serve this: {type(exc).__name__}")
        if response.background is None and hold.amount:
            response.background = BackgroundTask(hold.release)
        else:
            hold.release()
        return response

    async def _route(self, request: Request, hold: Hold) -> Response:
        raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        if "/-/" in raw:
            name_part, _, file = raw.lstrip("/").partition("/-/")
            name = package_from_path(name_part)
            if name and file.endswith(".tgz") and "/" not in file and ".." not in file:
                return await self.tarball(request, name, file, hold)
            return _error(404, "not served by the chainwatch proxy")
        name = package_from_path(raw)
        if name is None:
            return _error(400, "not a package name")
        return await self.packument(request, name, hold)

    async def _send(self, request: Request, url: str, headers: dict[str, str],
                    check_hosts: bool) -> httpx.Response:
        """GET ``url`` streamed, following redirects by hand: the client's credentials only
        to the upstream origin, and (``check_hosts``) every hop allowed and resolving to an
        address the proxy may fetch from."""
        for hop in range(MAX_REDIRECTS + 1):
            if check_hosts and (why := await self.egress.resolved_refusal(url)):
                raise Refused(f"redirected to {url}: {why}" if hop else why)
            response = await self.http.send(self.http.build_request(
                "GET", url, headers={**headers, **self._auth(request, url)}), stream=True)
            if not response.has_redirect_location:  # (a 304 "is_redirect" too)
                return response
            location = response.headers.get("location", "")
            await response.aclose()
            url = str(httpx.URL(url).join(location))
            check_hosts = True  # wherever the first URL was, a redirect target is checked
        raise Refused(f"more than {MAX_REDIRECTS} redirects")

    async def _fetch(self, name: str, request: Request, etag: str | None,
                     hold: Hold) -> tuple[int, bytes, dict[str, str]]:
        """Status, body (read under the size limit and the memory budget) and headers."""
        headers = {"Accept": "application/json"}
        if etag:
            headers["If-None-Match"] = etag
        response = await self._send(request, self.upstream + quote(name, safe="@"), headers,
                                    check_hosts=False)
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
                # the bytes, the entry made of them and the parsing and rendering on the way,
                # reserved as they arrive
                await hold.grow_to(size * (ENTRY_FACTOR + PARSE_FACTOR))
                chunks.append(chunk)
            return response.status_code, b"".join(chunks), dict(response.headers)
        finally:
            await response.aclose()

    async def _entry(self, request: Request, name: str,
                     hold: Hold) -> tuple[Cached, bool] | Response:
        """The upstream packument (and whether it is served stale), or an error response.

        Concurrent requests for one packument wait for a single upstream fetch."""
        key = (name, hashlib.sha256(request.headers.get("authorization", "").encode()).hexdigest())
        lock = self._flights.setdefault(key, asyncio.Lock())
        async with lock:
            try:
                return await self._refresh(request, name, key, hold)
            finally:
                # a request still waiting keeps its lock object; one arriving later makes a
                # new one (at worst a second fetch), so the table stays as small as the traffic
                self._flights.pop(key, None)

    async def _refresh(self, request: Request, name: str, key: tuple[str, str],
                       hold: Hold) -> tuple[Cached, bool] | Response:
        cached = self.cache.get(key)
        if cached is not None and time.monotonic() - cached.fetched < self.fresh_seconds:
            return cached, False
        try:
            while True:
                try:
                    # a whole-answer deadline: an upstream dripping a byte at a time never
                    # trips the per-read timeout, and must not hold the client forever
                    status, raw, headers = await asyncio.wait_for(self._fetch(
                        name, request, cached.etag if cached else None, hold),
                        PACKUMENT_DEADLINE)
                    break
                except YieldToOlder:  # free what this request holds, start over (it waits)
                    hold.release()
                    if time.monotonic() >= hold.deadline:
                        raise
                    await asyncio.sleep(0.05)
        except TooLarge:
            return _error(502, f"upstream packument of {name} is larger than "
                               f"{self.max_packument} bytes")
        except Refused as exc:
            return _error(502, f"upstream redirected where the proxy does not go: {exc}")
        except (httpx.TimeoutException, httpx.TransportError, TimeoutError) as exc:
            if cached is not None:
                return cached, True
            kind = ("timed out" if isinstance(exc, (httpx.TimeoutException, TimeoutError))
                    else "unreachable")
            return _error(504 if kind == "timed out" else 502,
                          f"upstream {kind}: {type(exc).__name__}: {exc}")
        got = self._parse(name, cached, status, raw, headers)
        if isinstance(got, Cached):
            if got.weight <= self.cache.max_bytes:  # its share of the hold moves to the cache
                hold.hand_over(got.weight, lambda: self.cache.put(key, got))
            return got, False
        return got

    def _parse(self, name: str, cached: Cached | None, status: int, raw: bytes,
               headers: dict[str, str]) -> Cached | tuple[Cached, bool] | Response:
        """A new entry to cache, a cached one (and whether stale), or an error response."""
        if status == 304 and cached is not None:
            cached.fetched = time.monotonic()
            return cached, False
        if status != 200:
            if status >= 500 and cached is not None:
                return cached, True
            if 300 <= status < 400:
                return _error(502, f"upstream answered HTTP {status} for {name}")
            return Response(raw, status_code=status, media_type=headers.get("content-type"))
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(502, "upstream sent a packument that is not JSON")
        if not isinstance(doc, dict) or not isinstance(doc.get("versions", {}), dict):
            return _error(502, "upstream sent a malformed packument")
        return Cached(raw, headers.get("etag"), time.monotonic(), slim_packument(doc))

    def _blocked(self, name: str, doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
        """version -> (rule, reason) for every version the proxy hides: those it cannot serve
        through itself, then those the policy blocks (stored verdicts only)."""
        out: dict[str, tuple[str, str]] = {}
        versions = doc.get("versions") or {}
        for version, data in versions.items():
            if why := unservable(version, data, self.egress):
                out[version] = ("unservable", why)
        decided = self.checker.decide_all(name, [v for v in versions if v not in out], doc)
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
        if self.decision_log is not None:  # queued only: the database is written elsewhere
            self.decision_log.record_once(Recorded(
                "proxy", name, version, "block", rule, reason,
                "packument" if action == "hidden" else "tarball"))
        log.info("%s %s@%s %s: %s", action, name, version, rule, reason)

    def _base(self, request: Request) -> str:
        return self.public_url or str(request.base_url)

    async def packument(self, request: Request, name: str, hold: Hold) -> Response:
        got = await self._entry(request, name, hold)
        if isinstance(got, Response):
            return got
        entry, stale = got
        # the same entry judged again within DECIDED_SECONDS, with nothing written to the
        # known-bad store or verdict memory by this process since, gets the same decisions
        # (a burst of clients, or --cache-ttl 0s answered 304, costs one judgement)
        basis = (getattr(self.checker.known_bad, "generation", None),
                 self.checker.scans.scans if self.checker.scans is not None else None)
        now = time.monotonic()
        held = entry.decided
        if (held is not None and basis[0] is not None and held[1] == basis
                and now - held[0] < DECIDED_SECONDS):
            blocked = held[2]
        else:
            blocked = await anyio.to_thread.run_sync(self._blocked, name, entry.slim)
            entry.decided = (now, basis, blocked)
        shown = frozenset((v, rule) for v, (rule, _) in blocked.items())
        before = self._logged.get(name, frozenset())
        if shown != before:  # log what is hidden when it changes, not on every request
            for version, (rule, reason) in blocked.items():
                if (version, rule) not in before:
                    self._record(name, version, "hidden", rule, reason)
        self._logged[name] = shown
        self._logged.move_to_end(name)
        while len(self._logged) > 10_000:
            self._logged.popitem(last=False)
        wants_corgi = ABBREVIATED in request.headers.get("accept", "")
        keep = frozenset(v for v in entry.slim.get("versions") or {} if v not in blocked)
        render_key = (keep, wants_corgi, self._base(request))
        body = entry.renders.get(render_key)
        if body is None:
            # parsing and rendering it, and the entry itself when the cache does not hold it
            need = PARSE_FACTOR * len(entry.raw) + (0 if entry.cached else entry.weight)
            try:
                await hold.grow_to(need)
            except YieldToOlder:  # let the older request finish; wait holding nothing
                hold.release()
                await hold.grow_to(need)
            body = await anyio.to_thread.run_sync(
                self._render, name, entry.raw, keep, wants_corgi, render_key[2])

            def store(done: bytes = body) -> None:
                if len(entry.renders) >= 4:
                    entry.renders.clear()
                entry.renders[render_key] = done
                self.cache.trim()

            if entry.cached:  # the body joins the cached entry; else this request holds it
                hold.hand_over(len(body), store)
        return Response(body, media_type=ABBREVIATED if wants_corgi else "application/json",
                        headers={"X-Chainwatch-Stale": "upstream unavailable"} if stale else None)

    @staticmethod
    def _render(name: str, raw: bytes, keep: frozenset[str], corgi: bool, base: str) -> bytes:
        """The packument as served: only the versions kept, tags moved, every tarball URL
        rewritten to the proxy (whatever its shape upstream)."""
        doc = orjson.loads(raw)
        versions = doc.get("versions") if isinstance(doc.get("versions"), dict) else {}
        doc["versions"] = {v: d for v, d in versions.items() if v in keep and isinstance(d, dict)}
        times = doc.get("time")
        if isinstance(times, dict):
            doc["time"] = {k: t for k, t in times.items()
                           if k in ("created", "modified") or k in doc["versions"]}
        else:
            doc.pop("time", None)
        allowed = [v for v in reversed(sort_versions(doc["versions"]))
                   if (p := parse(v)) is not None and not p.prerelease]
        tags = doc.get("dist-tags") if isinstance(doc.get("dist-tags"), dict) else {}
        for tag, version in list(tags.items()):
            if not isinstance(version, str) or version not in doc["versions"]:
                if allowed:
                    tags[tag] = allowed[0]
                else:
                    del tags[tag]
        doc["dist-tags"] = tags
        short = name.rsplit("/", 1)[-1]
        for version, data in doc["versions"].items():
            # ``servable`` checked dist is an object with a tarball URL
            data["dist"]["tarball"] = f"{base}{quote(name, safe='@/')}/-/{short}-{version}.tgz"
        return orjson.dumps(abbreviate(doc) if corgi else doc)

    async def tarball(self, request: Request, name: str, file: str, hold: Hold) -> Response:
        base = name.rsplit("/", 1)[-1]
        version = file[len(base) + 1 : -4] if file.startswith(f"{base}-") else None
        got = await self._entry(request, name, hold)
        if isinstance(got, Response):
            return got
        doc = got[0].slim
        versions = doc.get("versions") or {}
        if version is None or version not in versions:
            return _error(404, f"unknown tarball {file}")
        why = unservable(version, versions[version], self.egress)
        url = self.egress.upgrade(versions[version]["dist"]["tarball"]) if why is None else ""
        if why is None:
            why = await self.egress.resolved_refusal(url)
        if why is not None:
            self._record(name, version, "refused", "unservable", why)
            return _error(403, f"chainwatch blocked {name}@{version}: unservable: {why}",
                          rule="unservable")
        try:
            decided = await anyio.to_thread.run_sync(
                lambda: self.checker.decide(name, version, doc, scan=True))
        except Exception as exc:  # fail closed: a gate that cannot decide does not serve
            log.exception("deciding %s@%s", name, version)
            decided = [("block", "gate-error", f"chainwatch could not decide: "
                                               f"{type(exc).__name__}: {exc}"[:400])]
        for action, rule, reason in decided:
            if action == "block":
                self._record(name, version, "refused", rule, reason)
                return _error(403, f"chainwatch blocked {name}@{version}: {rule}: {reason}",
                              rule=rule)
        try:
            upstream = await self._send(request, url, {}, check_hosts=True)
        except Refused as exc:
            self._record(name, version, "refused", "unservable", str(exc))
            return _error(403, f"chainwatch blocked {name}@{version}: unservable: {exc}",
                          rule="unservable")
        except httpx.TimeoutException as exc:
            return _error(504, f"upstream timed out: {type(exc).__name__}: {exc}")
        except httpx.TransportError as exc:
            return _error(502, f"upstream unreachable: {type(exc).__name__}: {exc}")
        if upstream.status_code != 200:
            await upstream.aclose()
            return _error(502 if upstream.status_code >= 500 else 404,
                          f"upstream answered HTTP {upstream.status_code} for {file}")

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_bytes():
                    yield chunk
            finally:
                await upstream.aclose()

        headers = {k: v for k, v in upstream.headers.items()
                   if k.lower() in ("content-length", "etag", "last-modified")}
        hold.release()  # streamed: nothing of the budget is held while a client reads slowly
        return StreamingResponse(body(), status_code=200, headers=headers,
                                 media_type="application/octet-stream")
