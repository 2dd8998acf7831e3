"""The proxy in-process (httpx ASGI transport) in front of a mock upstream registry."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from chainwatch.archive.limits import Limits
from chainwatch.gate.check import Checker
from chainwatch.gate.policy import Policy
from chainwatch.gate.proxy import ABBREVIATED, Proxy
from chainwatch.intel import BuiltinKnownBad
from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz, manifest

NOW = datetime.now(UTC)
UP = "https://upstream.test.invalid/"
TARBALL = make_tgz({"package.json": manifest("debug", "4.4.1"), "index.js": BENIGN_INDEX})
#: (host, Authorization) of every request the mock upstream received
SEEN: list[tuple[str, str | None]] = []


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


async def resolver(host: str, port: int) -> list[str]:
    """No DNS in unit tests: every name is a documentation address."""
    return ["192.0.2.10"]


def packument(name: str, blobs: dict[str, bytes] | None = None) -> dict[str, Any]:
    base = name.rsplit("/", 1)[-1]
    versions = {"4.4.1": "2025-01-01T00:00:00Z", "4.4.2": "2025-09-08T13:00:00Z",
                "4.5.0": (NOW - timedelta(hours=1)).isoformat()}
    return {"name": name, "dist-tags": {"latest": "4.5.0"},
            "time": {"modified": NOW.isoformat(), **versions},
            "versions": {v: {"name": name, "version": v, "readme": "long text",
                             "dist": {"tarball": f"{UP}{name}/-/{base}-{v}.tgz",
                                      "integrity": sri((blobs or {}).get(v, TARBALL))}}
                         for v in versions}}


def upstream(request: httpx.Request) -> httpx.Response:
    SEEN.append((request.url.host, request.headers.get("authorization")))
    path = request.url.raw_path.decode()
    if path.endswith(".tgz"):
        return httpx.Response(200, content=TARBALL)
    if "missing" in path:
        return httpx.Response(404, json={"error": "Not found"})
    name = path.lstrip("/").replace("%2f", "/").replace("%2F", "/")
    return httpx.Response(200, json=packument(name))


def make(checker: Checker, handler: Any, **kw: Any) -> Proxy:
    return Proxy(UP, checker, transport=httpx.MockTransport(handler), resolver=resolver, **kw)


def call(method: str, path: str, **kw: Any) -> httpx.Response:
    proxy = make(Checker(Policy(), None, BuiltinKnownBad()), upstream)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy.app),
                                     base_url="http://proxy.test") as client:
            return await client.request(method, path, **kw)

    return asyncio.run(go())


def test_blocked_and_too_young_versions_are_hidden_and_tags_move() -> None:
    r = call("GET", "/debug")
    doc = r.json()
    assert set(doc["versions"]) == {"4.4.1"}  # 4.4.2 known-bad, 4.5.0 an hour old
    assert doc["dist-tags"]["latest"] == "4.4.1"
    assert doc["versions"]["4.4.1"]["dist"]["tarball"] == "http://proxy.test/debug/-/debug-4.4.1.tgz"


def test_abbreviated_packument_and_scoped_names() -> None:
    r = call("GET", "/@scope%2fdebug", headers={"Accept": ABBREVIATED})
    assert r.headers["content-type"].startswith(ABBREVIATED)
    doc = r.json()
    assert "readme" not in doc["versions"]["4.4.1"] and doc["name"] == "@scope/debug"


def test_blocked_tarball_is_refused_with_the_rule() -> None:
    r = call("GET", "/debug/-/debug-4.4.2.tgz")
    assert r.status_code == 403 and r.json()["rule"] == "known-bad"
    young = call("GET", "/debug/-/debug-4.5.0.tgz")
    assert young.status_code == 403 and young.json()["rule"] == "min-age"


def test_allowed_tarball_streams_with_the_clients_auth_to_the_upstream_only() -> None:
    SEEN.clear()
    r = call("GET", "/debug/-/debug-4.4.1.tgz", headers={"Authorization": "Bearer t0k"})
    assert r.status_code == 200 and r.content == TARBALL
    # packument and tarball both asked of the upstream host, each with the client's token
    assert SEEN == [("upstream.test.invalid", "Bearer t0k")] * 2


def test_errors_and_odd_paths() -> None:
    assert call("GET", "/missing-pkg").status_code == 404
    assert call("GET", "/..%2f..%2fetc%2fpasswd").status_code == 400
    assert call("GET", "/-/chainwatch/health").json()["status"] == "ok"


def test_upstream_down_is_502() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    proxy = make(Checker(Policy(), None, BuiltinKnownBad()), down)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy.app),
                                     base_url="http://proxy.test") as client:
            return await client.get("/debug")

    r = asyncio.run(go())
    assert r.status_code == 502
    assert r.json()["error"] == "upstream unreachable: ConnectError: refused"


def serve(proxy: Proxy, *requests: tuple[str, str]) -> list[httpx.Response]:
    """Several requests against one proxy (so its cache is shared between them)."""

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy.app),
                                     base_url="http://proxy.test") as client:
            return [await client.request(m, p) for m, p in requests]

    return asyncio.run(go())


class Flaky:
    """An upstream that answers, counts requests, and can be switched off or made slow."""

    def __init__(self) -> None:
        self.calls = 0
        self.mode = "up"
        self.etag_hits = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.mode == "down":
            raise httpx.ConnectError("refused", request=request)
        if self.mode == "slow":
            raise httpx.ReadTimeout("no answer in time", request=request)
        if self.mode == "error":
            return httpx.Response(503, text="maintenance")
        if request.headers.get("if-none-match") == '"v1"':
            self.etag_hits += 1
            return httpx.Response(304)
        if request.url.path.endswith(".tgz"):
            return httpx.Response(200, content=TARBALL)
        return httpx.Response(200, json=packument("debug"), headers={"ETag": '"v1"'})


def test_cache_revalidates_and_never_serves_a_newly_blocked_version(tmp_path: Any) -> None:
    from chainwatch.intel.store import CombinedKnownBad, KnownBadStore, Record

    store = KnownBadStore(f"sqlite:///{tmp_path / 'kb.db'}")
    upstream_ = Flaky()
    proxy = make(Checker(Policy(), None, CombinedKnownBad(store, BuiltinKnownBad())),
                 upstream_, fresh_seconds=0)
    first, tar_ok = serve(proxy, ("GET", "/debug"), ("GET", "/debug/-/debug-4.4.1.tgz"))
    assert "4.4.1" in first.json()["versions"] and tar_ok.status_code == 200
    # 4.4.1 becomes known-bad while the packument sits in the cache
    store.import_records([Record(
        {"id": "MAL-TEST-1", "source": "test", "summary": "test record", "published": None,
         "modified": None, "withdrawn": None, "aliases": "[]", "references": "[]"},
        [{"advisory_id": "MAL-TEST-1", "package": "debug", "version": "4.4.1"}])])
    upstream_.mode = "down"  # and upstream goes away: the cached copy is served stale
    again, tar = serve(proxy, ("GET", "/debug"), ("GET", "/debug/-/debug-4.4.1.tgz"))
    assert again.status_code == 200 and again.headers["x-chainwatch-stale"]
    assert again.json()["versions"] == {} and "latest" not in again.json()["dist-tags"]
    assert tar.status_code == 403 and tar.json()["rule"] == "known-bad"


def test_cache_is_fresh_for_a_while_then_asks_with_the_etag() -> None:
    upstream_ = Flaky()
    proxy = make(Checker(Policy(), None, BuiltinKnownBad()), upstream_, fresh_seconds=60)
    serve(proxy, ("GET", "/debug"), ("GET", "/debug"), ("GET", "/debug/-/debug-4.4.1.tgz"))
    assert upstream_.calls == 2  # one packument fetch, one tarball
    proxy.fresh_seconds = 0
    assert serve(proxy, ("GET", "/debug"))[0].status_code == 200 and upstream_.etag_hits == 1


def test_slow_or_failing_upstream_is_504_or_passed_on() -> None:
    upstream_ = Flaky()
    upstream_.mode = "slow"
    proxy = make(Checker(Policy(), None, BuiltinKnownBad()), upstream_)
    slow = serve(proxy, ("GET", "/debug"))[0]
    assert slow.status_code == 504 and "timed out" in slow.json()["error"]
    upstream_.mode = "error"
    assert serve(proxy, ("GET", "/debug"))[0].status_code == 503


def test_huge_and_malformed_packuments_are_bounded_errors() -> None:
    async def chunks() -> Any:
        for _ in range(10_000):  # 640 MB if it were all read
            yield b" " * 65536

    def huge(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())  # streamed, no length

    proxy = make(Checker(Policy(), None, BuiltinKnownBad()), huge, max_packument=1024 * 1024)
    r = serve(proxy, ("GET", "/debug"))[0]
    assert r.status_code == 502 and "larger than" in r.json()["error"]
    for body in (b"not json", b"[1, 2]", b'{"versions": []}'):
        bad = make(Checker(Policy(), None, BuiltinKnownBad()),
                   lambda _r, b=body: httpx.Response(200, content=b))
        r = serve(bad, ("GET", "/debug"))[0]
        assert r.status_code == 502 and "packument" in r.json()["error"]


def test_scoped_name_encodings_and_traversal() -> None:
    for path in ("/@scope%2fdebug", "/@scope%2Fdebug", "/%40scope%2fdebug", "/@scope/debug"):
        r = call("GET", path)
        assert r.status_code == 200 and r.json()["name"] == "@scope/debug", path
    for path in ("/@scope/debug/-/debug-4.4.1.tgz", "/@scope%2fdebug/-/debug-4.4.1.tgz"):
        assert call("GET", path).status_code == 200, path
    for path in ("/debug/-/..%2f..%2fdebug-4.4.1.tgz", "/debug/-/../debug-4.4.1.tgz",
                 "/@scope%252fdebug", "/%2e%2e/etc/passwd", "/debug%00", "/@/x", "/@Scope/x",
                 "/.debug", "/_debug"):
        assert call("GET", path).status_code in (400, 404), path


def test_scan_rule_hides_stored_malicious_and_scans_a_tarball_before_serving(
        tmp_path: Any) -> None:
    """Real scans of real bytes: 4.4.0 carries the inert clipper replica, 4.4.1 does not."""
    from chainwatch.gate.scanning import ScanGate
    from chainwatch.model import Verdict
    from chainwatch.registry import NpmConfig, RegistryClient
    from chainwatch.scan import Scanner
    from chainwatch.verdicts import VerdictStore

    blobs = {"4.4.0": make_tgz({"package.json": manifest("debug", "4.4.0"),
                                "index.js": clipper_source()}),
             "4.4.1": make_tgz({"package.json": manifest("debug", "4.4.1"),
                                "index.js": BENIGN_INDEX})}
    blobs["4.4.2"] = blobs["4.5.0"] = blobs["4.4.1"]

    def up(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(".tgz"):
            return httpx.Response(200, content=blobs[request.url.path[len("/debug/-/debug-"):-4]])
        doc = packument("debug", blobs)
        doc["versions"]["4.4.0"] = {**doc["versions"]["4.4.1"], "version": "4.4.0", "dist": {
            "tarball": f"{UP}debug/-/debug-4.4.0.tgz", "integrity": sri(blobs["4.4.0"])}}
        doc["time"]["4.4.0"] = "2024-12-01T00:00:00Z"
        return httpx.Response(200, json=doc)

    class Counting(Scanner):
        def __init__(self) -> None:
            super().__init__(RegistryClient(NpmConfig(registry=UP), tmp_path / "c", backoff=0,
                                            transport=httpx.MockTransport(up)), workers=1)
            self.scanned: list[str] = []

        def scan(self, spec: str, against: str | None = None,
                 packument: dict[str, Any] | None = None,
                 limits: Limits | None = None) -> Verdict:
            self.scanned.append(spec.rsplit("@", 1)[1])
            return super().scan(spec, against, packument, limits)

    store = VerdictStore(f"sqlite:///{tmp_path / 'v.db'}")
    scanner = Counting()
    gate = ScanGate(scanner, store, timedelta(days=36500))
    proxy = make(Checker(Policy(), None, BuiltinKnownBad(), scans=gate), up)
    doc, bad, good = serve(proxy, ("GET", "/debug"), ("GET", "/debug/-/debug-4.4.0.tgz"),
                           ("GET", "/debug/-/debug-4.4.1.tgz"))
    assert "4.4.0" in doc.json()["versions"] and scanner.scanned == ["4.4.0", "4.4.1"]
    assert bad.status_code == 403 and bad.json()["rule"] == "scan-malicious"
    assert good.status_code == 200 and good.content == blobs["4.4.1"]
    # the stored verdict now hides 4.4.0 from the packument, without scanning again
    assert "4.4.0" not in serve(proxy, ("GET", "/debug"))[0].json()["versions"]
    assert scanner.scanned == ["4.4.0", "4.4.1"]


def test_the_age_rule_reads_the_clock_on_every_request() -> None:
    import time as clock

    checker = Checker(Policy(), None, BuiltinKnownBad())  # one checker, as a proxy keeps it
    doc = packument("debug")
    doc["time"]["4.4.1"] = (datetime.now(UTC) - timedelta(hours=48) + timedelta(
        seconds=0.6)).isoformat()
    assert [r for _, r, _ in checker.decide("debug", "4.4.1", doc)] == ["min-age"]
    clock.sleep(1.0)  # now old enough
    assert checker.decide("debug", "4.4.1", doc) == []
    assert Checker(Policy(), None, BuiltinKnownBad(), now=NOW).now == NOW
