"""``check`` run again while its packuments are fresh: not one request to the registry.

A real HTTP server on loopback plays the registry (packuments and tarballs) and counts every
request by path; ``chainwatch check`` runs twice against it with one cache and data folder, as
a CI job does on its second run (issue 14: warm ≤3 s).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from chainwatch.gate.deferred import DeferredScanner, DeferredStore
from chainwatch.model import Level, PackageRef, Verdict
from tests.cli_runner import chainwatch, clean_env


def _tarball(name: str, version: str, body: str) -> bytes:
    files = {"package/package.json": json.dumps({"name": name, "version": version,
                                                 "main": "index.js", "license": "MIT"}),
             "package/index.js": body}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class Registry:
    """Packuments and tarballs on loopback; ``asked`` counts the requests per path."""

    def __init__(self, ages: dict[str, dict[str, timedelta]]) -> None:
        self.asked: Counter[str] = Counter()
        self.tarballs: dict[str, bytes] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.ages = ages
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = unquote(self.path)
                outer.asked[path] += 1
                name = path.strip("/")
                if name in outer.docs:
                    body, kind = json.dumps(outer.docs[name]).encode(), "application/json"
                elif path in outer.tarballs:
                    body, kind = outer.tarballs[path], "application/octet-stream"
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        now = datetime.now(UTC)
        for name, versions in ages.items():
            doc: dict[str, Any] = {"name": name, "dist-tags": {}, "versions": {}, "time": {}}
            for version, age in versions.items():
                data = _tarball(name, version, f"module.exports = () => '{version}';\n")
                path = f"/{name}/-/{name}-{version}.tgz"
                self.tarballs[path] = data
                doc["versions"][version] = {
                    "name": name, "version": version,
                    "_npmUser": {"name": "maintainer", "email": "m@example.invalid"},
                    "maintainers": [{"name": "maintainer"}],
                    "dist": {"tarball": self.url + path.lstrip("/"), "integrity": _sri(data),
                             "unpackedSize": 200}}
                doc["time"][version] = (now - age).isoformat().replace("+00:00", "Z")
                doc["dist-tags"]["latest"] = version
            self.docs[name] = doc

    def lockfile(self, folder: Path, pins: dict[str, str]) -> Path:
        packages: dict[str, Any] = {"": {"name": "app", "version": "1.0.0",
                                         "dependencies": {n: v for n, v in pins.items()}}}
        for name, version in pins.items():
            data = self.tarballs[f"/{name}/-/{name}-{version}.tgz"]
            packages[f"node_modules/{name}"] = {
                "version": version, "resolved": f"{self.url}{name}/-/{name}-{version}.tgz",
                "integrity": _sri(data)}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package-lock.json").write_text(json.dumps(
            {"name": "app", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
             "packages": packages}))
        return folder

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


OLD = timedelta(days=400)


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = Registry({"alpha": {"1.0.0": OLD}, "beta": {"2.0.0": OLD, "2.1.0": OLD},
                    "gamma": {"0.1.0": OLD},
                    # 1.1.0 is within the scan window (30 days) and old enough for min-age
                    "fresh": {"1.0.0": OLD, "1.1.0": timedelta(days=5)}})
    yield reg
    reg.stop()


def _check(reg: Registry, project: Path, home: Path, *extra: str
           ) -> tuple[int, dict[str, Any]]:
    done = chainwatch("check", str(project), "--registry", reg.url, "--format", "json", "-q",
                      *extra, env=clean_env(home))
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_warm_check_sends_no_request(registry: Registry, tmp_path: Path) -> None:
    project = registry.lockfile(tmp_path / "app", {"alpha": "1.0.0", "beta": "2.1.0",
                                                    "gamma": "0.1.0", "fresh": "1.1.0"})
    code, cold = _check(registry, project, tmp_path)
    # every packument once; the release within the scan window scanned (with its baseline)
    assert {p: n for p, n in registry.asked.items() if not p.endswith(".tgz")} == {
        "/alpha": 1, "/beta": 1, "/gamma": 1, "/fresh": 1}
    assert registry.asked["/fresh/-/fresh-1.1.0.tgz"] == 1
    assert (tmp_path / "data" / "chainwatch.db").exists()  # the scan's verdict is kept
    registry.asked.clear()

    warm_code, warm = _check(registry, project, tmp_path)
    assert registry.asked == Counter()  # fresh packuments, a stored verdict: nothing asked
    assert (warm_code, warm) == (code, cold)
    assert warm["summary"]["checked"] == 4

    # with the TTL at 0 every packument is asked for again (the registry sends no validators)
    _check(registry, project, tmp_path, "--no-scan")
    assert registry.asked == Counter()
    registry.asked.clear()
    done = chainwatch("check", str(project), "--registry", registry.url, "--format", "json",
                      "-q", env=clean_env(tmp_path, CHAINWATCH_PACKUMENT_TTL="0s"))
    assert done.returncode == code
    assert sorted(registry.asked) == ["/alpha", "/beta", "/fresh", "/gamma"]


def test_a_version_missing_from_a_fresh_copy_is_still_asked_for(
        registry: Registry, tmp_path: Path) -> None:
    project = registry.lockfile(tmp_path / "app", {"alpha": "1.0.0"})
    _check(registry, project, tmp_path)
    # a release published since the copy was cached: the lockfile pins it
    data = _tarball("alpha", "1.1.0", "module.exports = 2;\n")
    registry.tarballs["/alpha/-/alpha-1.1.0.tgz"] = data
    registry.docs["alpha"]["versions"]["1.1.0"] = {
        "name": "alpha", "version": "1.1.0", "dist": {
            "tarball": registry.url + "alpha/-/alpha-1.1.0.tgz", "integrity": _sri(data)}}
    registry.docs["alpha"]["time"]["1.1.0"] = (datetime.now(UTC) - OLD).isoformat()
    registry.lockfile(project, {"alpha": "1.1.0"})
    registry.asked.clear()
    _, out = _check(registry, project, tmp_path)
    assert registry.asked["/alpha"] == 1
    assert not [d for d in out["decisions"] if d["rule"] == "registry"]


def test_a_check_that_scans_nothing_loads_no_scanner_and_no_database(
        registry: Registry, tmp_path: Path) -> None:
    """Old releases only, nothing stored: no database file is created, and neither run
    imports SQLAlchemy or the analysis code (a new process, as a CI job starts one)."""
    project = registry.lockfile(tmp_path / "app", {"alpha": "1.0.0", "beta": "2.0.0"})
    probe = ("import sys\nfrom chainwatch.cli import main\n"
             "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
             "print(code, sorted(m for m in ('sqlalchemy', 'chainwatch.scan', "
             "'chainwatch.analysis.engine', 'yara', 'tree_sitter') if m in sys.modules))\n")
    for run in ("cold", "warm"):
        done = subprocess.run(
            [sys.executable, "-c", probe, "check", str(project), "--registry", registry.url,
             "--format", "json", "-q"], env=clean_env(tmp_path), capture_output=True,
            text=True, timeout=120, check=False)
        last = done.stdout.strip().splitlines()[-1]
        assert last == "0 []", (run, done.stdout[-500:], done.stderr[-500:])
    assert not (tmp_path / "data" / "chainwatch.db").exists()
    assert sum(registry.asked.values()) == 2  # the cold run's two packuments, nothing more


class _Memory:
    def __init__(self) -> None:
        self.kept: list[Verdict] = []

    def for_package(self, name: str) -> list[Any]:
        return [v for v in self.kept if v.target.name == name]

    def for_packages(self, names: Any, batch: int = 500) -> dict[str, list[Any]]:
        return {n: self.for_package(n) for n in names}

    def put(self, verdict: Verdict) -> Any:
        from chainwatch.verdicts import stored_from_verdict

        self.kept.append(verdict)
        return stored_from_verdict(verdict)


def _verdict() -> Verdict:
    return Verdict(target=PackageRef("demo", "1.0.0"), level=Level.BENIGN, score=0,
                   explanation="nothing found", findings=(), capabilities=(),
                   integrity="sha512-" + "A" * 86 + "==", origin="registry")


def test_deferred_store_opens_on_the_first_verdict_kept_and_only_once() -> None:
    opened: list[_Memory] = []

    def open_store() -> _Memory:
        opened.append(_Memory())
        return opened[-1]

    store = DeferredStore(open_store)
    assert store.for_package("demo") == [] and store.for_packages(["demo"]) == {}
    assert opened == [] and not store.opened
    stored = store.put(_verdict())
    store.put(_verdict())
    assert len(opened) == 1 and len(opened[0].kept) == 2 and stored.level is Level.BENIGN
    assert [v.target.name for v in store.for_package("demo")] == ["demo", "demo"]


def test_deferred_store_that_cannot_open_keeps_verdicts_for_the_run() -> None:
    tries: list[int] = []

    def open_store() -> None:
        tries.append(1)
        return None

    store = DeferredStore(open_store)
    assert store.put(_verdict()).level is Level.BENIGN
    store.put(_verdict())
    assert tries == [1]  # asked once: a database that cannot be opened is not retried per scan


def test_deferred_scanner_builds_one_scanner_for_many_threads() -> None:
    made: list[int] = []

    class Fake:
        client = None
        sandbox = False

        def scan(self, spec: str, against: str | None = None,
                 packument: dict[str, Any] | None = None, limits: Any = None) -> Verdict:
            return _verdict()

    def make() -> Fake:
        made.append(1)
        return Fake()

    scanner = DeferredScanner(make, None, sandbox=True)
    assert scanner.made is None and scanner.sandbox
    threads = [threading.Thread(target=scanner.scan, args=("demo@1.0.0",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == [1] and scanner.made is not None


@pytest.mark.parametrize("bound", [3, 64])
def test_the_clients_connection_bound_reaches_its_pool(tmp_path: Path, bound: int) -> None:
    """``check --jobs`` raises ``max_connections``; httpx does not pass a client's own limits to
    a transport it is given, so the egress transport's pool is built with them."""
    from chainwatch.registry import NpmConfig, RegistryClient

    client = RegistryClient(NpmConfig(registry="https://registry.example.invalid/"), tmp_path,
                            max_connections=bound)
    with client:
        pool = client._http._transport._sync_transport._pool  # type: ignore[attr-defined]
        assert (pool._max_connections, pool._max_keepalive_connections) == (bound, bound)
