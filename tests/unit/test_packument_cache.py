"""How long a cached packument is trusted, and what a stale, corrupt or foreign one does.

A real HTTP server on loopback plays the registry and counts what it is asked, so the client's
whole path (egress guard, retries, conditional headers) is the one that runs in production.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chainwatch.errors import RegistryError, UsageError
from chainwatch.gate.check import Checker
from chainwatch.gate.policy import Policy, load_policy
from chainwatch.intel.builtin import BuiltinKnownBad
from chainwatch.model import Environment, InstalledPackage
from chainwatch.registry import NpmConfig, RegistryClient
from chainwatch.registry.cache import Cache
from chainwatch.registry.client import packument_url

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _doc(name: str = "demo", hours_old: float = 1000.0, scripts: dict[str, str] | None = None
         ) -> dict[str, Any]:
    when = (NOW - timedelta(hours=hours_old)).isoformat().replace("+00:00", "Z")
    return {"name": name, "dist-tags": {"latest": "1.0.0"}, "time": {"1.0.0": when},
            "versions": {"1.0.0": {
                "name": name, "version": "1.0.0", "scripts": scripts or {},
                "dist": {"tarball": f"http://127.0.0.1/{name}/-/{name}-1.0.0.tgz",
                         "integrity": "sha512-" + "A" * 86 + "=="}}}}


@dataclass
class Registry:
    """A registry on loopback: serves ``doc`` with an ETag (or none), counts requests."""

    doc: dict[str, Any] = field(default_factory=_doc)
    etag: str | None = '"v1"'
    requests: list[dict[str, str]] = field(default_factory=list)
    #: a broken registry: "not modified" whatever it is asked
    always_304: bool = False
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def start(self) -> Registry:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append({k.lower(): v for k, v in self.headers.items()})
                if outer.always_304 or (outer.etag
                                        and self.headers.get("If-None-Match") == outer.etag):
                    self.send_response(304)
                    self.send_header("ETag", outer.etag)
                    self.end_headers()
                    return
                body = json.dumps(outer.doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if outer.etag:
                    self.send_header("ETag", outer.etag)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = Registry().start()
    yield reg
    reg.stop()


def client(reg: Registry, cache: Path, ttl: float, **kw: Any) -> RegistryClient:
    return RegistryClient(NpmConfig(registry=reg.url), cache, packument_ttl=ttl, retries=0,
                          timeout=5.0, **kw)


def _meta(cache: Path, url: str) -> Path:
    return Cache(cache)._doc_path(url).with_suffix(".meta")


def _age_record(cache: Path, url: str, seconds: float) -> None:
    """Make the cached copy ``seconds`` older than it is (as if fetched that long ago)."""
    path = _meta(cache, url)
    meta = json.loads(path.read_bytes())
    meta["fetched"] -= seconds
    path.write_text(json.dumps(meta))


def test_a_fresh_packument_is_not_asked_for_again(registry: Registry, tmp_path: Path) -> None:
    with client(registry, tmp_path, ttl=300) as c:
        assert c.slim_packument("demo")["name"] == "demo"
    with client(registry, tmp_path, ttl=300) as c:  # another run, same cache
        assert c.slim_packument("demo")["versions"]["1.0.0"]["version"] == "1.0.0"
        assert c.packument("demo")["name"] == "demo"
    assert len(registry.requests) == 1


def test_ttl_zero_asks_every_time(registry: Registry, tmp_path: Path) -> None:
    with client(registry, tmp_path, ttl=0) as c:
        c.slim_packument("demo")
        c.slim_packument("demo")
    assert len(registry.requests) == 2
    assert registry.requests[1].get("if-none-match") == '"v1"'


def test_a_stale_packument_is_revalidated_once_then_fresh_again(
        registry: Registry, tmp_path: Path) -> None:
    with client(registry, tmp_path, ttl=300) as c:
        c.slim_packument("demo")
    _age_record(tmp_path, packument_url(registry.url, "demo"), 301)
    with client(registry, tmp_path, ttl=300) as c:
        assert c.slim_packument("demo")["name"] == "demo"  # stale: a conditional request
        assert c.slim_packument("demo")["name"] == "demo"  # the 304 made it fresh again
    assert len(registry.requests) == 2
    assert registry.requests[1].get("if-none-match") == '"v1"'


def test_a_304_keeps_the_cached_bytes_and_a_changed_document_replaces_them(
        registry: Registry, tmp_path: Path) -> None:
    with client(registry, tmp_path, ttl=0) as c:
        c.packument("demo")
        registry.doc = _doc(scripts={"postinstall": "node x.js"})
        # same ETag: the registry says "not modified", the old copy stands
        assert c.packument("demo")["versions"]["1.0.0"]["scripts"] == {}
        registry.etag = '"v2"'
        assert c.slim_packument("demo")["versions"]["1.0.0"]["scripts"] == {
            "postinstall": "node x.js"}
    with client(registry, tmp_path, ttl=300) as c:  # the fresh slim copy is the new one
        assert c.slim_packument("demo")["versions"]["1.0.0"]["scripts"] == {
            "postinstall": "node x.js"}
    assert len(registry.requests) == 3


def test_a_304_without_a_cached_copy_is_a_registry_error(tmp_path: Path) -> None:
    reg = Registry(always_304=True).start()
    try:
        with client(reg, tmp_path, ttl=300) as c, pytest.raises(RegistryError, match="304"):
            c.slim_packument("demo")
    finally:
        reg.stop()


def test_same_bytes_from_a_registry_without_validators_are_not_rewritten(tmp_path: Path) -> None:
    reg = Registry(etag=None).start()
    try:
        with client(reg, tmp_path, ttl=0) as c:
            c.slim_packument("demo")
            body = Cache(tmp_path)._doc_path(packument_url(reg.url, "demo"))
            before = body.stat().st_ino
            first = json.loads(_meta(tmp_path, packument_url(reg.url, "demo")).read_bytes())
            time.sleep(0.01)
            c.slim_packument("demo")
            after = json.loads(_meta(tmp_path, packument_url(reg.url, "demo")).read_bytes())
        assert body.stat().st_ino == before  # the body was left in place
        assert after["fetched"] > first["fetched"] and after["slim"] == first["slim"]
        assert len(reg.requests) == 2
    finally:
        reg.stop()


@pytest.mark.parametrize("damage", ["body-not-json", "body-changed", "record-not-json",
                                    "record-other-url", "fetched-in-future", "slim-changed",
                                    "slim-missing", "record-missing"])
def test_a_damaged_cache_entry_is_a_miss(registry: Registry, tmp_path: Path, damage: str) -> None:
    url = packument_url(registry.url, "demo")
    with client(registry, tmp_path, ttl=300) as c:
        c.slim_packument("demo")
    path = Cache(tmp_path)._doc_path(url)
    meta = json.loads(path.with_suffix(".meta").read_bytes())
    if damage == "body-not-json":
        path.write_bytes(b"\x00{not json")
        path.with_suffix(".slim").write_bytes(b"\x00{not json")
    elif damage == "body-changed":
        path.write_bytes(json.dumps(_doc(scripts={"postinstall": "x"})).encode())
        path.with_suffix(".slim").write_bytes(json.dumps(_doc(scripts={"postinstall": "x"})).encode())
    elif damage == "record-not-json":
        path.with_suffix(".meta").write_bytes(b"{")
    elif damage == "record-other-url":
        path.with_suffix(".meta").write_text(json.dumps({**meta, "url": "https://other.invalid/demo"}))
    elif damage == "fetched-in-future":
        path.with_suffix(".meta").write_text(json.dumps({**meta, "fetched": time.time() + 3600}))
    elif damage == "slim-changed":
        path.with_suffix(".slim").write_bytes(json.dumps(_doc(scripts={"postinstall": "x"})).encode())
    elif damage == "slim-missing":
        path.with_suffix(".slim").unlink()
    elif damage == "record-missing":
        path.with_suffix(".meta").unlink()
    with client(registry, tmp_path, ttl=300) as c:
        doc = c.slim_packument("demo")
    # never what was written into the cache by hand: the registry's document
    assert doc["versions"]["1.0.0"]["scripts"] == {}
    # a damaged slim copy next to an intact, fresh full copy needs no request; all else asks
    asked = 1 if damage in ("slim-changed", "slim-missing") else 2
    assert len(registry.requests) == asked, damage
    if damage in ("body-not-json", "body-changed"):  # no validators for bytes they do not match
        assert "if-none-match" not in registry.requests[1]


def test_a_packument_cached_from_one_registry_is_never_used_for_another(tmp_path: Path) -> None:
    one, two = Registry().start(), Registry(doc=_doc(scripts={"install": "x"})).start()
    try:
        with client(one, tmp_path, ttl=300) as c:
            assert c.slim_packument("demo")["versions"]["1.0.0"]["scripts"] == {}
        with client(two, tmp_path, ttl=300) as c:
            assert c.slim_packument("demo")["versions"]["1.0.0"]["scripts"] == {"install": "x"}
        assert (len(one.requests), len(two.requests)) == (1, 1)
        # a record copied over to the other registry's entry names its own URL: not fresh
        cache = Cache(tmp_path)
        src = cache._doc_path(packument_url(one.url, "demo"))
        dst = cache._doc_path(packument_url(two.url, "demo"))
        for suffix in (".json", ".meta", ".slim"):
            dst.with_suffix(suffix).write_bytes(src.with_suffix(suffix).read_bytes())
        with client(two, tmp_path, ttl=300) as c:
            assert c.slim_packument("demo")["versions"]["1.0.0"]["scripts"] == {"install": "x"}
        assert len(two.requests) == 2
    finally:
        one.stop()
        two.stop()


# -- the gate when the registry is gone -----------------------------------------------------
def _env() -> list[Environment]:
    return [Environment("package-lock.json", "package-lock", "package-lock.json",
                        (InstalledPackage("demo", "1.0.0", paths=(("app", "demo"),)),))]


def _decisions(c: RegistryClient, policy: Policy) -> set[tuple[str, str]]:
    checker = Checker(policy, c, BuiltinKnownBad(), now=NOW)
    return {(p.decision.rule, p.decision.action) for p in checker.check(_env(), timeout=30)}


@pytest.mark.parametrize("offline", ["warn", "block"])
def test_stale_and_unreachable_never_turns_a_block_into_an_allow(
        tmp_path: Path, offline: str) -> None:
    """The cached copy (an hour-old release: min-age blocks it) is stale and the registry is
    gone: the old copy is still judged (min-age still blocks) and the ``registry`` rule says
    the registry could not be asked, with the policy's offline action."""
    reg = Registry(doc=_doc(hours_old=1)).start()
    policy = Policy(offline=offline, packument_ttl=timedelta(minutes=5))
    with client(reg, tmp_path, ttl=300) as c:
        fresh = _decisions(c, policy)
    assert ("min-age", "block") in fresh and not any(r == "registry" for r, _ in fresh)
    _age_record(tmp_path, packument_url(reg.url, "demo"), 3600)
    reg.stop()  # the port is closed: connection refused
    with client(reg, tmp_path, ttl=300) as c:
        stale = _decisions(c, policy)
    assert ("min-age", "block") in stale
    assert ("registry", offline) in stale
    checker = Checker(policy, client(reg, tmp_path, ttl=300), BuiltinKnownBad(), now=NOW)
    reason = next(p.decision.reason for p in checker.check(_env(), timeout=30)
                  if p.decision.rule == "registry")
    assert "cached 1.0 h ago" in reason and "unreachable" in reason


def test_unreachable_without_a_cached_copy_is_the_offline_rule(tmp_path: Path) -> None:
    reg = Registry().start()
    reg.stop()
    with client(reg, tmp_path, ttl=300) as c:
        assert ("registry", "block") in _decisions(c, Policy(offline="block"))


# -- the policy's TTL -------------------------------------------------------------------------
def test_packument_ttl_from_the_policy_and_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAINWATCH_PACKUMENT_TTL", raising=False)
    assert load_policy().packument_ttl == timedelta(minutes=5)
    path = tmp_path / "p.toml"
    path.write_text('[registry]\npackument_ttl = "30m"\n')
    assert load_policy(path).packument_ttl == timedelta(minutes=30)
    assert load_policy(path).to_toml()["registry"] == {"packument_ttl": "30m"}
    monkeypatch.setenv("CHAINWATCH_PACKUMENT_TTL", "0s")  # force a refresh
    assert load_policy(path).packument_ttl == timedelta(0)
    monkeypatch.setenv("CHAINWATCH_PACKUMENT_TTL", "soon")
    with pytest.raises(UsageError, match="CHAINWATCH_PACKUMENT_TTL"):
        load_policy(path)
    monkeypatch.delenv("CHAINWATCH_PACKUMENT_TTL")
    for bad in ('packument_ttl = "2d"', "packument_ttl = 5", 'packument-ttl = "5m"'):
        path.write_text(f"[registry]\n{bad}\n")
        with pytest.raises(UsageError):
            load_policy(path)


# -- the cache's size -------------------------------------------------------------------------
def test_the_cache_is_pruned_oldest_first_to_its_bound(registry: Registry, tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    for i in range(6):
        cache.put_blob(bytes([i]) * 100_000)
        time.sleep(0.01)
    with client(registry, tmp_path, ttl=300, cache_max_bytes=350_000) as c:
        c.slim_packument("demo")  # written last: kept
    kept = [p for p in (tmp_path / "content").rglob("*") if p.is_file() and p.stat().st_size > 1000]
    total = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert total <= 350_000 and 1 <= len(kept) <= 3
    assert cache.get_blob("sha512", hashlib.sha512(bytes([0]) * 100_000).hexdigest()) is None
    assert cache.get_blob("sha512", hashlib.sha512(bytes([5]) * 100_000).hexdigest()) is not None
    with client(registry, tmp_path, ttl=300) as c:
        c.slim_packument("demo")
    assert len(registry.requests) == 1  # the packument survived the pruning


def test_a_version_newer_than_the_fresh_copy_is_asked_for_not_passed(tmp_path: Path) -> None:
    """The cached copy is fresh but predates a release (say, a compromised one published a
    minute ago and already in the lockfile): the registry is asked again and min-age blocks
    it, instead of a 'not in the registry' warning from the old copy."""
    reg = Registry().start()
    try:
        with client(reg, tmp_path, ttl=300) as c:
            c.slim_packument("demo")
        doc = _doc()
        doc["versions"]["1.0.1"] = {**doc["versions"]["1.0.0"], "version": "1.0.1"}
        doc["time"]["1.0.1"] = (NOW - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
        reg.doc, reg.etag = doc, '"v2"'
        env = [Environment("package-lock.json", "package-lock", "package-lock.json",
                           (InstalledPackage("demo", "1.0.1", paths=(("app", "demo"),)),
                            InstalledPackage("demo", "1.0.0", paths=(("app", "demo"),))))]
        with client(reg, tmp_path, ttl=300) as c:
            placed = Checker(Policy(), c, BuiltinKnownBad(), now=NOW).check(env, timeout=30)
        found = {(p.decision.version, p.decision.rule, p.decision.action) for p in placed}
        assert ("1.0.1", "min-age", "block") in found
        assert not any(rule == "registry" for _, rule, _ in found)
        assert len(reg.requests) == 2  # once for the first copy, once when 1.0.1 was missing
    finally:
        reg.stop()
