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


def test_without_strict_the_unjudged_are_warnings_and_say_so(
        tmp_path: Path, silent_registry: str) -> None:
    project(tmp_path)
    code, doc, elapsed = run(tmp_path, silent_registry, "--timeout", "2")
    assert elapsed < 10 and code == 0
    rows = doc["decisions"]
    assert isinstance(rows, list) and rows
    assert all(r["action"] == "warn" and r["rule"] == "timeout" for r in rows)


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
