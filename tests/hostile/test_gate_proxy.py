"""Attacks on the proxy from a hostile registry (issue 11, item 3).

The fake upstream logs every request and the credentials that came with it, to any host, so
each test can say where a client's token went and which hosts the proxy contacted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpcore
import httpx
import pytest

from tests.hostile.fake_registry import FakeRegistry, Seen, make_proxy, serve

TOKEN = {"Authorization": "Bearer s3cret-client-token"}


def _served_tarballs(doc: dict[str, Any]) -> dict[str, str]:
    return {v: d["dist"]["tarball"] for v, d in doc["versions"].items()}


def test_client_token_never_reaches_a_foreign_tarball_host() -> None:
    reg = FakeRegistry()
    reg.publish("lp", "1.0.0", url="https://foreign.test.invalid/lp/-/lp-1.0.0.tgz")
    reg.publish("lp", "1.0.1")
    proxy = make_proxy(reg)
    doc, foreign, own = serve(proxy, ("GET", "/lp", TOKEN), ("GET", "/lp/-/lp-1.0.0.tgz", TOKEN),
                              ("GET", "/lp/-/lp-1.0.1.tgz", TOKEN))
    assert set(doc.json()["versions"]) == {"1.0.1"}
    assert foreign.status_code == 403 and foreign.json()["rule"] == "unservable"
    assert "foreign.test.invalid" in foreign.json()["error"]
    assert own.status_code == 200
    assert own.content == reg.blobs["https://upstream.test.invalid/lp/-/lp-1.0.1.tgz"]
    # the token went to the upstream (packument and tarball), and nowhere else was even asked
    assert reg.credentials_seen() == {"upstream.test.invalid": {TOKEN["Authorization"]}}
    assert {s.host for s in reg.log} == {"upstream.test.invalid"}
    hidden = [d for d in proxy.decisions if d["version"] == "1.0.0"]
    assert hidden and hidden[0]["rule"] == "unservable"


def test_allow_listed_tarball_host_is_fetched_without_the_clients_token() -> None:
    reg = FakeRegistry()
    reg.publish("lp", "1.0.0", url="https://mirror.test.invalid/blobs/lp-1.0.0.tgz")
    proxy = make_proxy(reg, tarball_hosts=("mirror.test.invalid",))
    doc, tar = serve(proxy, ("GET", "/lp", TOKEN), ("GET", "/lp/-/lp-1.0.0.tgz", TOKEN))
    assert _served_tarballs(doc.json()) == {"1.0.0": "http://proxy.test/lp/-/lp-1.0.0.tgz"}
    assert tar.status_code == 200
    assert reg.credentials_seen() == {"upstream.test.invalid": {TOKEN["Authorization"]}}
    assert "mirror.test.invalid" in {s.host for s in reg.log}


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/lp-1.0.0.tgz",
    "http://[::ffff:169.254.169.254]/lp-1.0.0.tgz",
    "http://[fe80::1]/lp-1.0.0.tgz",
    "http://100.100.100.200/lp-1.0.0.tgz",
    "http://0.0.0.0:4873/lp/-/lp-1.0.0.tgz",
    "https://metadata.test.invalid/lp-1.0.0.tgz",   # allow-listed, resolves to 169.254.169.254
    "https://rebind.test.invalid/lp-1.0.0.tgz",     # allow-listed, one of its addresses is
])
def test_metadata_and_link_local_tarballs_are_never_fetched(url: str) -> None:
    reg = FakeRegistry()
    reg.publish("lp", "1.0.0", url=url)
    proxy = make_proxy(reg, tarball_hosts=("metadata.test.invalid", "rebind.test.invalid"))
    doc, tar = serve(proxy, ("GET", "/lp", TOKEN), ("GET", "/lp/-/lp-1.0.0.tgz", TOKEN))
    assert tar.status_code == 403 and tar.json()["rule"] == "unservable"
    assert {s.host for s in reg.log} == {"upstream.test.invalid"}, "the proxy asked elsewhere"
    if "test.invalid" not in url:  # a literal address is refused without any lookup
        assert doc.json()["versions"] == {}


def test_a_redirect_to_the_metadata_address_or_a_foreign_host_is_not_followed() -> None:
    reg = FakeRegistry()
    entry = reg.publish("lp", "1.0.0")
    reg.publish("lp", "1.0.1")
    where = {"1.0.0": "http://169.254.169.254/latest/meta-data/",
             "1.0.1": "https://foreign.test.invalid/lp-1.0.1.tgz"}
    assert entry["dist"]["tarball"].endswith("lp-1.0.0.tgz")

    def hostile(request: httpx.Request) -> httpx.Response:
        for version, target in where.items():
            if request.url.path.endswith(f"lp-{version}.tgz") and request.url.host.startswith(
                    "upstream"):
                reg.log.append(Seen(request.url.host, request.url.path,
                                    request.headers.get("authorization")))
                return httpx.Response(302, headers={"Location": target})
        return reg(request)

    proxy = make_proxy(reg, transport=httpx.MockTransport(hostile))
    first, second = serve(proxy, ("GET", "/lp/-/lp-1.0.0.tgz", TOKEN),
                          ("GET", "/lp/-/lp-1.0.1.tgz", TOKEN))
    assert first.status_code == 403 and "169.254.169.254" in first.json()["error"]
    assert second.status_code == 403 and "foreign.test.invalid" in second.json()["error"]
    assert {s.host for s in reg.log} == {"upstream.test.invalid"}


@pytest.mark.parametrize("url", [
    "https://upstream.test.invalid/download/lp/1.0.0",            # GitHub Packages style
    "https://upstream.test.invalid/lp/1.0.0.tgz?token=abc",
    "https://upstream.test.invalid/x/-/lp-1.0.0.tgz#frag",
    "https://upstream.test.invalid:443/lp/-/lp-1.0.0.tgz",
    "http://upstream.test.invalid/lp/-/lp-1.0.0.tgz",   # old packuments: fetched over https
])
def test_every_tarball_url_shape_is_rewritten_to_the_proxy(url: str) -> None:
    reg = FakeRegistry()
    reg.publish("lp", "1.0.0", url=url)
    proxy = make_proxy(reg, public_url="https://gate.example.test/npm/")
    doc, corgi, tar = serve(proxy, ("GET", "/lp"),
                            ("GET", "/lp", {"Accept": "application/vnd.npm.install-v1+json"}),
                            ("GET", "/lp/-/lp-1.0.0.tgz"))
    for body in (doc.json(), corgi.json()):
        assert _served_tarballs(body) == {"1.0.0": "https://gate.example.test/npm/lp/-/lp-1.0.0.tgz"}
    assert tar.status_code == 200
    assert tar.content == reg.blobs[url.replace("http://", "https://")]
    assert {(s.scheme, s.host) for s in reg.log} == {("https", "upstream.test.invalid")}


@pytest.mark.parametrize("url", [
    "https://foreign.test.invalid/x?/-/lp-1.0.0.tgz",       # '/-/' only in the query
    "https://upstream.test.invalid@foreign.test.invalid/lp/-/lp-1.0.0.tgz",  # user info
    "http://upstream.test.invalid:8080/lp/-/lp-1.0.0.tgz",   # another port, another scheme
    "https://upstream.test.invalid:8443/lp/-/lp-1.0.0.tgz",  # another port
    "file:///etc/passwd",
    "git+ssh://git@foreign.test.invalid/lp.git",
    "/lp/-/lp-1.0.0.tgz",
    "",
])
def test_a_version_whose_tarball_cannot_go_through_the_proxy_is_hidden(url: str) -> None:
    reg = FakeRegistry()
    reg.publish("lp", "1.0.0", url=url or None)
    reg.docs["lp"]["versions"]["1.0.0"]["dist"]["tarball"] = url
    reg.publish("lp", "0.9.0")
    proxy = make_proxy(reg)
    doc, tar = serve(proxy, ("GET", "/lp"), ("GET", "/lp/-/lp-1.0.0.tgz"))
    body = doc.json()
    assert set(body["versions"]) == {"0.9.0"} and body["dist-tags"]["latest"] == "0.9.0"
    assert all(u.startswith("http://proxy.test/") for u in _served_tarballs(body).values())
    assert tar.status_code == 403 and tar.json()["rule"] == "unservable"
    assert {s.host for s in reg.log} == {"upstream.test.invalid"}


@pytest.mark.parametrize("dist", [
    None, {}, {"tarball": None, "integrity": "sha512-AAAA"}, "https://upstream.test.invalid/x.tgz",
    {"tarball": "https://upstream.test.invalid/lp/-/lp-1.0.0.tgz", "shasum": "not-hex-at-all!"},
    {"tarball": "https://upstream.test.invalid/lp/-/lp-1.0.0.tgz", "shasum": 42},
    {"tarball": "https://upstream.test.invalid/lp/-/lp-1.0.0.tgz", "integrity": "md5-xxxx"},
    {"tarball": "https://upstream.test.invalid/lp/-/lp-1.0.0.tgz"},   # nothing to verify with
    {"tarball": ["https://upstream.test.invalid/lp/-/lp-1.0.0.tgz"], "integrity": "sha512-AAAA"},
])
def test_broken_dist_hides_the_version_never_a_500(dist: Any) -> None:
    reg = FakeRegistry()
    reg.publish("lp", "1.0.0", dist=dist)
    reg.publish("lp", "0.9.0")
    proxy = make_proxy(reg)
    doc, corgi, tar = serve(proxy, ("GET", "/lp"),
                            ("GET", "/lp", {"Accept": "application/vnd.npm.install-v1+json"}),
                            ("GET", "/lp/-/lp-1.0.0.tgz"))
    assert doc.status_code == 200 and corgi.status_code == 200
    assert set(doc.json()["versions"]) == set(corgi.json()["versions"]) == {"0.9.0"}
    assert tar.status_code == 403 and tar.json()["rule"] == "unservable"
    reasons = {d["reason"] for d in proxy.decisions if d["version"] == "1.0.0"}
    assert reasons and all(r for r in reasons)


def test_hostile_packument_shapes_are_served_or_refused_never_a_500() -> None:
    reg = FakeRegistry()
    reg.publish("lp", "0.9.0")
    doc = reg.docs["lp"]
    doc["versions"]["1.0.0"] = None
    doc["versions"]["2.0.0"] = "a string"
    doc["versions"]["../../x"] = dict(doc["versions"]["0.9.0"])
    doc["time"] = {"0.9.0": doc["time"]["0.9.0"], "1.0.0": ["not", "a", "time"],
                   "modified": {"x": 1}}
    doc["dist-tags"] = {"latest": "1.0.0", "next": ["x"], "beta": "../../x"}
    proxy = make_proxy(reg)
    full, corgi = serve(proxy, ("GET", "/lp"),
                        ("GET", "/lp", {"Accept": "application/vnd.npm.install-v1+json"}))
    for r in (full, corgi):
        assert r.status_code == 200
        assert set(r.json()["versions"]) == {"0.9.0"}
        assert set(r.json()["dist-tags"].values()) == {"0.9.0"}
    reg.docs["lp"]["dist-tags"] = "latest"
    reg.docs["lp"]["time"] = ["not", "an", "object"]
    proxy = make_proxy(reg)
    again = serve(proxy, ("GET", "/lp"))[0]
    # no publish time: no version can be shown to be old enough (fail closed), and no 500
    assert again.status_code == 200 and again.json()["dist-tags"] == {}
    assert again.json()["versions"] == {}
    assert any("no publish time" in d["reason"] for d in proxy.decisions)


def test_legacy_names_with_capitals_are_served() -> None:
    reg = FakeRegistry()
    reg.publish("JSONStream", "1.3.5")
    proxy = make_proxy(reg)
    doc, tar = serve(proxy, ("GET", "/JSONStream"), ("GET", "/JSONStream/-/JSONStream-1.3.5.tgz"))
    assert doc.status_code == 200 and set(doc.json()["versions"]) == {"1.3.5"}
    assert tar.status_code == 200
    for path in ("/..%2fJSONStream", "/.hidden", "/_private", "/JSON Stream", "/@Scope/x",
                 "/a/b", "/%2e%2e"):
        assert serve(proxy, ("GET", path))[0].status_code in (400, 404), path


def test_rewritten_urls_never_come_from_the_host_header() -> None:
    reg = FakeRegistry()
    reg.publish("lp", "1.0.0")
    proxy = make_proxy(reg, public_url="https://gate.example.test/")
    r = serve(proxy, ("GET", "/lp", {"Host": "evil.test.invalid"}), base_url="http://evil.test")[0]
    assert _served_tarballs(r.json()) == {"1.0.0": "https://gate.example.test/lp/-/lp-1.0.0.tgz"}


def test_decisions_need_the_token_beyond_loopback() -> None:
    reg = FakeRegistry()
    closed = make_proxy(reg, open_decisions=False)
    assert serve(closed, ("GET", "/-/chainwatch/decisions"))[0].status_code == 403
    guarded = make_proxy(reg, open_decisions=False, token="op-token")
    none, wrong, right = serve(guarded, ("GET", "/-/chainwatch/decisions"),
                               ("GET", "/-/chainwatch/decisions", {"Authorization": "Bearer x"}),
                               ("GET", "/-/chainwatch/decisions",
                                {"Authorization": "Bearer op-token"}))
    assert (none.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert right.json() == {"decisions": []}
    assert serve(make_proxy(reg), ("GET", "/-/chainwatch/decisions"))[0].status_code == 200


def test_the_scan_does_not_fetch_a_baseline_from_the_metadata_address(tmp_path: Any) -> None:
    """The release asked for is fine; its previous version (the scan's baseline) is not."""
    from datetime import timedelta

    from chainwatch.gate.check import Checker
    from chainwatch.gate.policy import Policy
    from chainwatch.gate.scanning import ScanGate
    from chainwatch.intel import BuiltinKnownBad
    from chainwatch.registry import NpmConfig, RegistryClient
    from chainwatch.scan import Scanner

    reg = FakeRegistry()
    reg.publish("lp", "1.0.0", url="http://169.254.169.254/latest/meta-data/lp-1.0.0.tgz")
    reg.publish("lp", "1.0.1")
    client = RegistryClient(NpmConfig(registry=reg.base), tmp_path, backoff=0,
                            transport=httpx.MockTransport(reg))
    gate = ScanGate(Scanner(client, workers=1), None, timedelta(days=30))
    proxy = make_proxy(reg, Checker(Policy(), None, BuiltinKnownBad(), scans=gate))
    r = serve(proxy, ("GET", "/lp/-/lp-1.0.1.tgz"))[0]
    assert r.status_code == 403 and r.json()["rule"] == "scan-error"
    assert "169.254.169.254" in r.json()["error"]
    assert {s.host for s in reg.log} == {"upstream.test.invalid"}


def test_connections_go_only_to_the_address_that_was_vetted() -> None:
    """DNS rebinding: the name resolves to a fine address when checked and to the metadata
    address when connecting. The connection itself is vetted, to the address it vetted."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from chainwatch.gate.egress import vetted_transport

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_a: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    answers = {"fine.test.invalid": ["127.0.0.1"],
               "rebound.test.invalid": ["169.254.169.254"],
               "mixed.test.invalid": ["127.0.0.1", "fe80::1"]}
    asked: list[str] = []

    async def resolver(host: str, _port: int) -> list[str]:
        asked.append(host)
        return answers[host]

    connected: list[str] = []

    class LoopbackOnly(httpcore.AnyIOBackend):
        """Records where connections go; never leaves loopback, even if the vetting failed."""

        async def connect_tcp(self, host: str, port: int, *a: Any,
                              **k: Any) -> httpcore.AsyncNetworkStream:
            connected.append(host)
            if host != "127.0.0.1":
                raise httpcore.ConnectError(f"test refused to connect to {host}")
            return await super().connect_tcp(host, port, *a, **k)

    async def go() -> list[Any]:
        out: list[Any] = []
        limits = httpx.Limits(max_connections=4)
        async with httpx.AsyncClient(transport=vetted_transport(
                limits, resolver, LoopbackOnly())) as client:
            for host in answers:
                try:
                    out.append((await client.get(f"http://{host}:{port}/x")).text)
                except httpx.ConnectError as exc:
                    out.append(str(exc))
        return out

    try:
        fine, rebound, mixed = asyncio.run(go())
    finally:
        server.shutdown()
    assert fine == "ok"
    assert "169.254.169.254" in rebound and "link-local" in rebound
    assert "fe80::1" in mixed
    assert asked == list(answers) and connected == ["127.0.0.1"]


def test_a_hidden_version_is_logged_once_whichever_document_and_cache_entry_asked() -> None:
    """A first-day user saw express's unservable versions logged three times in 30 s: the
    abbreviated and the full packument, and a refetch, are separate cache entries."""
    reg = FakeRegistry()
    reg.publish("lp", "1.0.0", url="https://foreign.test.invalid/lp/-/lp-1.0.0.tgz")
    reg.publish("lp", "1.0.1")
    proxy = make_proxy(reg, fresh_seconds=0)  # every request fetches a new document
    corgi = {"Accept": "application/vnd.npm.install-v1+json"}
    serve(proxy, ("GET", "/lp"), ("GET", "/lp", corgi), ("GET", "/lp"), ("GET", "/lp", corgi))
    hidden = [d for d in proxy.decisions if d["action"] == "hidden"]
    assert [(d["version"], d["rule"]) for d in hidden] == [("1.0.0", "unservable")]
