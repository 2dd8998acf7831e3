"""Verdict memory cannot be poisoned: a local tarball only speaks for the registry release
whose bytes it is. Every command runs through the CLI against a loopback fake registry."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from chainwatch.output.jsonout import scan_documents
from tests.cli_runner import chainwatch, clean_env
from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz, manifest


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class FakeRegistry:
    """Packuments and tarballs on 127.0.0.1, each package with one version; logs every path."""

    def __init__(self) -> None:
        self.packuments: dict[str, dict[str, object]] = {}
        self.tarballs: dict[str, bytes] = {}
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.requests.append(self.path)
                name = self.path.lstrip("/").replace("%2f", "/").replace("%2F", "/")
                if name in registry.packuments:
                    body = json.dumps(registry.packuments[name]).encode()
                elif self.path in registry.tarballs:
                    body = registry.tarballs[self.path]
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, name: str, version: str, tarball: bytes, days_ago: int = 10) -> str:
        path = f"/{name}/-/{name}-{version}.tgz"
        self.tarballs[path] = tarball
        when = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(timespec="seconds")
        self.packuments[name] = {
            "name": name, "dist-tags": {"latest": version},
            "time": {"created": when, "modified": when, version: when},
            "maintainers": [{"name": "owner", "email": "owner@example.invalid"}],
            "versions": {version: {
                "name": name, "version": version, "_npmUser": {"name": "owner"},
                "dist": {"tarball": self.url.rstrip("/") + path, "integrity": sri(tarball),
                         "shasum": hashlib.sha1(tarball).hexdigest()}}}}
        return path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    yield fake
    fake.close()


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return chainwatch(*args, env=clean_env(home, COLUMNS="200"))


def project(folder: Path, name: str, version: str) -> Path:
    folder.mkdir()
    (folder / "package-lock.json").write_text(json.dumps({
        "name": "app", "lockfileVersion": 3, "packages": {
            "": {"name": "app", "dependencies": {name: version}},
            f"node_modules/{name}": {"version": version}}}))
    return folder


GENUINE = make_tgz({"package.json": manifest(name="debug", version="4.4.1"),
                    "index.js": BENIGN_INDEX})
IMPOSTOR = make_tgz({"package.json": manifest(name="debug", version="4.4.1"),
                     "index.js": clipper_source()})


def test_a_local_tarball_claiming_a_registry_release_cannot_get_it_blocked(
        tmp_path: Path, registry: FakeRegistry) -> None:
    registry.publish("debug", "4.4.1", GENUINE)
    evil = tmp_path / "some.tgz"
    evil.write_bytes(IMPOSTOR)
    recorded = tmp_path / "debug.packument.json"
    recorded.write_text(json.dumps(registry.packuments["debug"]))
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    # the attacker's tarball is malicious, and says it is debug@4.4.1
    for extra in ([], ["--packument", str(recorded)]):
        r = run("scan", str(evil), "--db", db, "--registry", registry.url, *extra,
                home=tmp_path)
        assert r.returncode == 1, r.stderr
        assert "remembered" not in r.stderr
        assert "not recorded as known-bad" in r.stderr and "differs" in r.stderr
    app = project(tmp_path / "app", "debug", "4.4.1")
    exposure = run("exposure", str(app), "--db", db, "--format", "json", home=tmp_path)
    assert exposure.returncode == 0, exposure.stdout
    assert json.loads(exposure.stdout)["environments"][0]["hits"] == []
    registry.requests.clear()
    check = run("check", str(app), "--db", db, "--registry", registry.url, "--format", "json",
                home=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    decisions = json.loads(check.stdout)["decisions"]
    assert not [d for d in decisions if d["action"] == "block"]
    # the gate judged the genuine bytes itself instead of trusting the impostor's verdict
    assert "/debug/-/debug-4.4.1.tgz" in registry.requests
    listed = json.loads(run("db", "verdicts", "list", "--db", db, "--format", "json",
                            home=tmp_path).stdout)
    assert listed["known_bad"] == []
    assert {v["key"] for v in listed["verdicts"]} >= {sri(IMPOSTOR)}
    assert sri(GENUINE) not in {v["key"] for v in listed["verdicts"] if v["level"] != "benign"}
    # and the proxy, with the same database, serves the genuine release
    packument, tarball = through_proxy(db, registry, tmp_path, "/debug",
                                       "/debug/-/debug-4.4.1.tgz")
    assert packument.status_code == 200 and "4.4.1" in packument.json()["versions"]
    assert tarball.status_code == 200 and tarball.content == GENUINE


def through_proxy(db: str, registry: FakeRegistry, home: Path,
                  *paths: str) -> list[httpx.Response]:
    """Requests to the proxy in-process, built as `chainwatch proxy --db DB --upstream` builds
    it (known-bad store plus verdict memory with on-demand scans)."""
    from chainwatch.gate.check import Checker
    from chainwatch.gate.policy import Policy
    from chainwatch.gate.proxy import Proxy
    from chainwatch.gate.scanning import ScanGate
    from chainwatch.intel import BuiltinKnownBad
    from chainwatch.intel.store import CombinedKnownBad, KnownBadStore
    from chainwatch.registry import NpmConfig, RegistryClient
    from chainwatch.scan import Scanner
    from chainwatch.verdicts import VerdictStore

    policy = Policy()
    client = RegistryClient(NpmConfig.load(registry.url), home / "proxy-cache")
    store = KnownBadStore(db)
    gate = ScanGate(Scanner(client, known_bad=CombinedKnownBad(), workers=1),
                    VerdictStore(engine=store.engine), policy.scan_window)
    proxy = Proxy(registry.url, Checker(policy, None, CombinedKnownBad(store, BuiltinKnownBad()),
                                        scans=gate))

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy.app),
                                     base_url="http://proxy.test") as http:
            return [await http.get(p) for p in paths]

    with client:
        return asyncio.run(go())


def test_a_local_tarball_that_is_the_registry_release_is_remembered(
        tmp_path: Path, registry: FakeRegistry) -> None:
    # the same mechanism still works when the bytes are the registry's own
    registry.publish("debug", "4.4.1", IMPOSTOR)
    sample = tmp_path / "sample.tgz"
    sample.write_bytes(IMPOSTOR)
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    r = run("scan", str(sample), "--db", db, "--registry", registry.url, home=tmp_path)
    assert r.returncode == 1 and "remembered debug@4.4.1 as CW-VERDICT-debug@4.4.1" in r.stderr
    app = project(tmp_path / "app", "debug", "4.4.1")
    exposure = run("exposure", str(app), "--db", db, "--format", "json", home=tmp_path)
    assert exposure.returncode == 1
    assert json.loads(exposure.stdout)["environments"][0]["hits"][0]["advisories"] == [
        "CW-VERDICT-debug@4.4.1"]


def test_an_unreachable_registry_marks_nothing(tmp_path: Path) -> None:
    sample = tmp_path / "sample.tgz"
    sample.write_bytes(IMPOSTOR)
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    r = run("scan", str(sample), "--db", db, "--registry", "http://127.0.0.1:9/",
            home=tmp_path)
    assert r.returncode == 1 and "could not confirm" in r.stderr and "remembered" not in r.stderr
    quiet = run("scan", str(sample), "--db", db, "--registry", "http://127.0.0.1:9/", "-q",
                home=tmp_path)
    assert quiet.returncode == 1 and quiet.stderr == ""
    app = project(tmp_path / "app", "debug", "4.4.1")
    assert run("exposure", str(app), "--db", db, home=tmp_path).returncode == 0


def test_a_folder_never_marks_a_registry_release(tmp_path: Path, registry: FakeRegistry) -> None:
    registry.publish("debug", "4.4.1", GENUINE)
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "package.json").write_text(manifest(name="debug", version="4.4.1"))
    (folder / "index.js").write_text(clipper_source())
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    r = run("scan", str(folder), "--db", db, "--registry", registry.url, home=tmp_path)
    assert r.returncode == 1 and "folder has no tarball integrity" in r.stderr
    listed = json.loads(run("db", "verdicts", "list", "--db", db, "--format", "json",
                            home=tmp_path).stdout)
    (stored,) = listed["verdicts"]
    assert stored["origin"] == "folder" and stored["key"].startswith("local:folder-sha256-")
    assert listed["known_bad"] == []


def test_rescans_do_not_nest_summaries_and_quiet_hides_the_notice(
        tmp_path: Path, registry: FakeRegistry) -> None:
    registry.publish("debug", "4.4.1", IMPOSTOR)
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    summaries = []
    for _ in range(3):
        r = run("scan", "debug@4.4.1", "--db", db, "--registry", registry.url, home=tmp_path)
        assert r.returncode == 1 and "remembered debug@4.4.1" in r.stderr, r.stderr
        (record,) = json.loads(run("db", "verdicts", "list", "--db", db, "--format", "json",
                                   home=tmp_path).stdout)["known_bad"]
        summaries.append(record["summary"])
    assert summaries[0] == summaries[1] == summaries[2]
    assert "listed as malicious by" not in summaries[-1]
    quiet = run("scan", "debug@4.4.1", "--db", db, "--registry", registry.url, "-q",
                home=tmp_path)
    assert quiet.returncode == 1 and "remembered" not in quiet.stderr
    # the re-scan's evidence is the code, not chainwatch's own earlier record
    (doc,) = scan_documents(json.loads(run(
        "scan", "debug@4.4.1", "--db", db, "--registry", registry.url, "--format", "json",
        "--no-remember", home=tmp_path).stdout))
    assert "CW-KNOWN-BAD" not in {f["rule"] for f in doc["findings"]}


def test_db_verdicts_list_and_remove_with_a_reason(tmp_path: Path,
                                                   registry: FakeRegistry) -> None:
    registry.publish("debug", "4.4.1", IMPOSTOR)
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    assert run("scan", "debug@4.4.1", "--db", db, "--registry", registry.url,
               home=tmp_path).returncode == 1
    table = run("db", "verdicts", "list", "--db", db, home=tmp_path)
    assert table.returncode == 0 and "debug@4.4.1" in table.stdout
    assert "CW-VERDICT-debug@4.4.1" in table.stdout
    app = project(tmp_path / "app", "debug", "4.4.1")
    assert run("exposure", str(app), "--db", db, home=tmp_path).returncode == 1
    no_reason = run("db", "verdicts", "remove", "debug@4.4.1", "--db", db, home=tmp_path)
    assert no_reason.returncode == 2
    blank = run("db", "verdicts", "remove", "debug@4.4.1", "--reason", "  ", "--db", db,
                home=tmp_path)
    assert blank.returncode == 2
    removed = run("db", "verdicts", "remove", "debug@4.4.1", "--reason",
                  "false positive: INC-42 reviewed", "--db", db, home=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert "CW-VERDICT-debug@4.4.1" in removed.stderr
    assert run("exposure", str(app), "--db", db, home=tmp_path).returncode == 0
    listed = json.loads(run("db", "verdicts", "list", "--db", db, "--format", "json",
                            home=tmp_path).stdout)
    assert listed["verdicts"] == [] and listed["known_bad"] == []
    (log,) = listed["removals"]
    assert log["reason"] == "false positive: INC-42 reviewed"
    assert log["advisories"] == ["CW-VERDICT-debug@4.4.1"] and log["keys"] == [sri(IMPOSTOR)]
    again = run("db", "verdicts", "remove", "debug@4.4.1", "--reason", "twice", "--db", db,
                home=tmp_path)
    assert again.returncode == 2 and "no stored verdict" in again.stderr
    # a key from the listing removes that one verdict
    assert run("scan", "debug@4.4.1", "--db", db, "--registry", registry.url,
               home=tmp_path).returncode == 1
    by_key = run("db", "verdicts", "remove", sri(IMPOSTOR), "--reason", "rescan later",
                 "--db", db, home=tmp_path)
    assert by_key.returncode == 0
    listed = json.loads(run("db", "verdicts", "list", "--db", db, "--format", "json",
                            home=tmp_path).stdout)
    assert listed["verdicts"] == [] and len(listed["known_bad"]) == 1


def test_a_folder_verdict_never_answers_for_a_release_without_integrity(tmp_path: Path) -> None:
    """A registry release without dist.integrity is looked up by name@version: a local folder
    claiming that name@version is stored under the digest of its files instead."""
    from chainwatch.gate.scanning import ScanGate
    from chainwatch.scan import Scanner
    from chainwatch.verdicts import VerdictStore

    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "package.json").write_text(manifest(name="debug", version="4.4.1"))
    (folder / "index.js").write_text(clipper_source())
    store = VerdictStore(f"sqlite:///{tmp_path / 'cw.db'}")
    with Scanner(None, workers=1) as scanner:
        verdict = scanner.scan(str(folder))
    assert verdict.level.value == "malicious" and verdict.origin == "folder"
    stored = store.put(verdict)
    assert stored.key.startswith("local:folder-sha256-")
    gate = ScanGate(Scanner(None, workers=1), store, timedelta(days=30))
    assert gate.cached("debug", "4.4.1", None) is None
    assert store.get("debug", "4.4.1", None) is None


def test_a_benign_scan_is_stored_so_it_can_replace_an_earlier_judgement(
        tmp_path: Path, registry: FakeRegistry) -> None:
    """Verdict memory keeps benign verdicts too (the newest judgement of the bytes wins)."""
    registry.publish("debug", "4.4.1", GENUINE)
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    assert run("scan", "debug@4.4.1", "--db", db, "--registry", registry.url,
               home=tmp_path).returncode == 0
    listed = json.loads(run("db", "verdicts", "list", "--db", db, "--format", "json",
                            home=tmp_path).stdout)
    assert [(v["package"], v["level"]) for v in listed["verdicts"]] == [("debug", "benign")]
