"""An unreachable or silent registry cannot make ``check`` pass slowly and quietly (issue 12 B,
item 3).

Before: against a registry that accepts connections and never answers, ``check`` of 30 versions
ran for minutes in silence and then exited 0 with warnings; a refused port took 35 s. Now the
run is bounded by ``--timeout``, a failed registry is asked once, and ``--strict`` (or policy
``offline = "block"``) blocks what could not be judged.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainwatch.cli import app
from chainwatch.gate.check import Checker
from chainwatch.gate.policy import Policy
from chainwatch.intel import BuiltinKnownBad
from chainwatch.model import Environment, InstalledPackage
from chainwatch.registry import NpmConfig, RegistryClient

NAMES = [f"pkg-{i}" for i in range(12)]


@pytest.fixture
def silent_registry() -> Iterator[str]:
    """A loopback server that accepts every connection and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(256)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def refused_registry() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now
    return f"http://127.0.0.1:{port}/"


def project(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    packages: dict[str, object] = {"": {"dependencies": {n: "1.0.0" for n in NAMES}}}
    for name, version in {**{n: "1.0.0" for n in NAMES}, **(extra or {})}.items():
        packages[f"node_modules/{name}"] = {"version": version}
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "package-lock.json").write_text(json.dumps(
        {"name": "app", "lockfileVersion": 3, "packages": packages}))
    return folder


def run(tmp_path: Path, registry: str, *args: str) -> tuple[int, dict[str, object], float]:
    start = time.monotonic()
    result = CliRunner().invoke(app, [
        "check", str(tmp_path / "project"), "--registry", registry, "--no-scan", "-f", "json",
        "--db", f"sqlite:///{tmp_path / 'cw.db'}", "--cache-dir", str(tmp_path / "c"), *args])
    elapsed = time.monotonic() - start
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout), elapsed


def test_a_silent_registry_is_bounded_by_timeout_and_strict_blocks(
        tmp_path: Path, silent_registry: str) -> None:
    project(tmp_path, {"debug": "4.4.2"})
    code, doc, elapsed = run(tmp_path, silent_registry, "--timeout", "2", "--strict")
    assert elapsed < 10, elapsed
    assert code == 1
    rows = doc["decisions"]
    assert isinstance(rows, list)
    rules = {(r["name"], r["rule"]): r["action"] for r in rows}
    assert all(rules[(n, "timeout")] == "block" for n in NAMES)
    assert rules[("debug", "known-bad")] == "block"  # local lists still judged on time


def test_by_default_the_unjudged_are_blocked_and_say_so(
        tmp_path: Path, silent_registry: str) -> None:
    """Fail closed: a gate that could not decide in time blocks (no --strict needed)."""
    project(tmp_path)
    code, doc, elapsed = run(tmp_path, silent_registry, "--timeout", "2")
    assert elapsed < 10 and code == 1
    rows = doc["decisions"]
    assert isinstance(rows, list) and rows
    assert all(r["action"] == "block" and r["rule"] == "timeout" for r in rows)


def test_policy_offline_warn_opts_into_warnings_for_the_unjudged(
        tmp_path: Path, silent_registry: str) -> None:
    project(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text('offline = "warn"\n')
    code, doc, elapsed = run(tmp_path, silent_registry, "--timeout", "2", "--policy", str(policy))
    assert elapsed < 10 and code == 0
    rows = doc["decisions"]
    assert isinstance(rows, list) and rows
    assert all(r["action"] == "warn" and r["rule"] == "timeout" for r in rows)
    # --strict overrides the policy's opt-in
    code, doc, _ = run(tmp_path, silent_registry, "--timeout", "2", "--policy", str(policy),
                       "--strict")
    assert code == 1


def test_an_unreachable_registry_blocks_by_default_in_one_table_line(tmp_path: Path) -> None:
    """Registry down: every version not on a known-bad list is blocked (rule registry), a
    known-bad one stays blocked as known-bad; the table says it once, JSON has every row."""
    project(tmp_path, {"debug": "4.4.2"})
    registry = refused_registry()
    code, doc, _ = run(tmp_path, registry)
    assert code == 1
    rows = doc["decisions"]
    assert isinstance(rows, list)
    assert {r["name"] for r in rows if r["action"] == "block" and r["rule"] == "registry"} \
        == set(NAMES)
    assert {(r["rule"], r["action"]) for r in rows if r["name"] == "debug"} \
        == {("known-bad", "block")}
    result = CliRunner().invoke(app, [
        "check", str(tmp_path / "project"), "--registry", registry, "--no-scan",
        "--db", f"sqlite:///{tmp_path / 'cw.db'}", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert sum("the registry could not be asked" in line for line in lines) == 1
    assert not any("registry metadata unavailable" in line for line in lines)
    assert any("debug@4.4.2" in line and "known-bad" in line for line in lines)


def test_policy_offline_block_blocks_when_the_registry_refuses(tmp_path: Path) -> None:
    project(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text('offline = "block"\n')
    code, doc, _ = run(tmp_path, refused_registry(), "--policy", str(policy))
    assert code == 1
    rows = doc["decisions"]
    assert isinstance(rows, list)
    assert {r["name"] for r in rows if r["action"] == "block" and r["rule"] == "registry"} \
        == set(NAMES)


def test_an_unreachable_registry_is_asked_once_not_once_per_package(tmp_path: Path) -> None:
    client = RegistryClient(NpmConfig(registry=refused_registry()), tmp_path / "c",
                            retries=0, backoff=0)
    checker = Checker(Policy(), client, BuiltinKnownBad())
    calls: list[str] = []
    real = client._get  # every request to the registry goes through it

    def counting(url: str, headers: dict[str, str]) -> object:
        calls.append(url)
        return real(url, headers)

    client._get = counting  # type: ignore[method-assign,assignment]
    seen: list[tuple[int, int]] = []
    env = Environment("lock", "package-lock.json", "package-lock.json",
                      tuple(InstalledPackage(n, "1.0.0") for n in NAMES))
    with client:
        placed = checker.check([env], jobs=1, timeout=30,
                               progress=lambda done, total: seen.append((done, total)))
    assert len(calls) == 1
    assert {p.decision.rule for p in placed} == {"registry"}
    assert seen[-1] == (len(NAMES), len(NAMES))  # progress reaches the end


@pytest.mark.parametrize("failure", ["refused", "5xx"])
def test_a_failing_registry_is_asked_once_with_eight_workers(tmp_path: Path, failure: str) -> None:
    """The first request goes alone: eight workers do not each wait through their own
    retries on a registry that is down (refused) or failing (HTTP 503)."""
    import http.server

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = (refused_registry() if failure == "refused"
           else f"http://127.0.0.1:{server.server_address[1]}/")
    client = RegistryClient(NpmConfig(registry=url), tmp_path / "c", retries=0, backoff=0)
    checker = Checker(Policy(), client, BuiltinKnownBad())
    calls: list[str] = []
    real = client._get

    def counting(url: str, headers: dict[str, str]) -> object:
        calls.append(url)
        time.sleep(0.05)  # the others are waiting, not asking
        return real(url, headers)

    client._get = counting  # type: ignore[method-assign,assignment]
    env = Environment("lock", "package-lock.json", "package-lock.json",
                      tuple(InstalledPackage(n, "1.0.0") for n in NAMES))
    try:
        with client:
            placed = checker.check([env], jobs=8, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert len(calls) == 1
    assert {(p.decision.rule, p.decision.action) for p in placed} == {("registry", "block")}
