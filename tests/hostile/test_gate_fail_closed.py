"""A scan that errors must block, in the proxy and in ``check`` (issue 11, item 2).

Reproduced before the fix: a garbage previous version (the baseline) made the scan of the payload
release raise, the gate turned that into a warning and the proxy served the payload with 200.
Scans here are real: a real Scanner reads real tarball bytes from the fake registry.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainwatch.archive.limits import Limits
from chainwatch.errors import ChainwatchError, UsageError
from chainwatch.gate.check import Checker
from chainwatch.gate.policy import Policy, load_policy
from chainwatch.gate.scanning import ScanGate
from chainwatch.intel import BuiltinKnownBad
from chainwatch.model import Environment, InstalledPackage, Verdict
from chainwatch.registry import NpmConfig, RegistryClient
from chainwatch.scan import Scanner
from tests.helpers import BENIGN_INDEX, clipper_source
from tests.hostile.fake_registry import FakeRegistry, make_proxy, serve

PAYLOAD = "/color-tint/-/color-tint-1.0.1.tgz"


class CountingScanner(Scanner):
    """The real scanner, counting the scans it is asked for."""

    def __init__(self, client: RegistryClient) -> None:
        super().__init__(client, workers=1)
        self.calls = 0

    def scan(self, spec: str, against: str | None = None,
             packument: dict[str, Any] | None = None,
             limits: Limits | None = None) -> Verdict:
        self.calls += 1
        return super().scan(spec, against, packument, limits)


def world(tmp_path: Path, baseline: bytes | None, policy: Policy | None = None,
          **gate_kw: Any) -> tuple[FakeRegistry, CountingScanner, ScanGate, Checker]:
    reg = FakeRegistry()
    if baseline is None:
        reg.publish("color-tint", "1.0.0", {"index.js": BENIGN_INDEX})
    else:
        reg.publish("color-tint", "1.0.0", data=baseline)  # integrity matches these bytes
    reg.publish("color-tint", "1.0.1", {"index.js": clipper_source()})
    client = RegistryClient(NpmConfig(registry=reg.base), tmp_path / "cache", backoff=0,
                            transport=httpx.MockTransport(reg))
    scanner = CountingScanner(client)
    gate = ScanGate(scanner, None, timedelta(days=30), **gate_kw)
    checker = Checker(policy or Policy(), client, BuiltinKnownBad(), scans=gate)
    return reg, scanner, gate, checker


def test_garbage_baseline_blocks_the_payload_in_the_proxy_and_is_not_rescanned(
        tmp_path: Path) -> None:
    reg, scanner, gate, checker = world(tmp_path, b"garbage, not a tarball " * 40)
    proxy = make_proxy(reg, checker)
    first, again = serve(proxy, ("GET", PAYLOAD), ("GET", PAYLOAD))
    for r in (first, again):
        assert r.status_code == 403 and r.json()["rule"] == "scan-error"
        assert "not a readable package archive" in r.json()["error"]
    assert scanner.calls == 1 and gate.failed == 1  # the failure is remembered, not rescanned
    logged = [d for d in proxy.decisions if d["version"] == "1.0.1"]
    assert logged and logged[0]["action"] == "refused" and logged[0]["rule"] == "scan-error"


def test_the_failure_is_remembered_briefly_then_the_release_is_scanned_again(
        tmp_path: Path) -> None:
    reg, scanner, _gate, checker = world(tmp_path, b"garbage" * 50, failure_seconds=0.2)
    proxy = make_proxy(reg, checker)
    assert serve(proxy, ("GET", PAYLOAD))[0].status_code == 403
    time.sleep(0.3)
    assert serve(proxy, ("GET", PAYLOAD))[0].status_code == 403
    assert scanner.calls == 2


def test_a_readable_baseline_still_lets_the_scan_decide(tmp_path: Path) -> None:
    reg, _scanner, _gate, checker = world(tmp_path, None)
    proxy = make_proxy(reg, checker)
    payload, base = serve(proxy, ("GET", PAYLOAD), ("GET", "/color-tint/-/color-tint-1.0.0.tgz"))
    assert payload.status_code == 403 and payload.json()["rule"] == "scan-malicious"
    assert base.status_code == 200


def test_on_error_warn_opts_out(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('[scan]\non_error = "warn"\n')
    policy = load_policy(policy_file)
    assert policy.scan_on_error == "warn" and Policy().scan_on_error == "block"
    reg, _scanner, _gate, checker = world(tmp_path, b"garbage" * 50, policy)
    assert serve(make_proxy(reg, checker), ("GET", PAYLOAD))[0].status_code == 200
    policy_file.write_text('[scan]\non_error = "off"\n')
    with pytest.raises(UsageError, match="on_error"):
        load_policy(policy_file)


def test_check_blocks_when_the_scan_errors(tmp_path: Path) -> None:
    _reg, _scanner, _gate, checker = world(tmp_path, b"garbage" * 50)
    env = Environment("package-lock.json", "npm", "lock", (
        InstalledPackage("color-tint", "1.0.1", paths=(("color-tint",),)),))
    placed = checker.check([env])
    found = {(p.decision.rule, p.decision.action) for p in placed}
    assert ("scan-error", "block") in found


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"),
                                   MemoryError(), KeyError("dist"), ValueError("odd")])
def test_any_exception_in_a_scan_blocks(tmp_path: Path, error: BaseException) -> None:
    reg, scanner, _gate, checker = world(tmp_path, None)

    def explode(*_a: Any, **_k: Any) -> Verdict:
        raise error

    scanner.scan = explode  # type: ignore[method-assign]
    r = serve(make_proxy(reg, checker), ("GET", PAYLOAD))[0]
    assert r.status_code == 403 and r.json()["rule"] == "scan-error"
    assert type(error).__name__ in r.json()["error"]


def test_a_scan_that_takes_too_long_blocks(tmp_path: Path) -> None:
    reg, scanner, _gate, checker = world(tmp_path, None, timeout=0.3)
    release = threading.Event()
    real = scanner.scan

    def slow(*a: Any, **k: Any) -> Verdict:
        release.wait(5)
        return real(*a, **k)

    scanner.scan = slow  # type: ignore[method-assign]
    started = time.monotonic()
    r = serve(make_proxy(reg, checker), ("GET", PAYLOAD))[0]
    release.set()
    assert r.status_code == 403 and "longer than" in r.json()["error"]
    assert time.monotonic() - started < 3


def test_a_full_scan_queue_blocks_instead_of_growing(tmp_path: Path) -> None:
    reg, scanner, gate, _checker = world(tmp_path, None, workers=1, queue=0, timeout=5)
    release = threading.Event()
    real = scanner.scan

    def slow(*a: Any, **k: Any) -> Verdict:
        release.wait(5)
        return real(*a, **k)

    scanner.scan = slow  # type: ignore[method-assign]
    doc = reg.docs["color-tint"]
    busy = threading.Thread(target=lambda: gate.verdict("color-tint", "1.0.1", doc,
                                                        Checker(Policy(), None,
                                                                BuiltinKnownBad()).now))
    busy.start()
    time.sleep(0.2)
    with pytest.raises(ChainwatchError, match="queue is full"):
        gate.verdict("color-tint", "1.0.0", doc, Checker(Policy(), None, BuiltinKnownBad()).now)
    release.set()
    busy.join()
