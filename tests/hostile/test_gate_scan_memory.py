"""An on-demand scan reserves what it really costs before it fetches anything.

Before: every scan reserved a flat 96 MB of the proxy's memory budget whatever the package, so
four concurrent scans of ~240 MB packages were all admitted and the proxy reached 825 MB RSS.
Now a scan reserves its base share plus UNPACKED_FACTOR x what the target and its baseline
unpack to (``dist.unpackedSize``, with slack; a default when absent), before fetching, and
releases it when done; each archive may unpack to no more than that claim, so a packument that
understates a size gets a critical archive finding (blocked), not a larger scan. These tests
check admission (who may run, what is reserved), never timing.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from chainwatch.archive import read_tarball
from chainwatch.archive.limits import Limits
from chainwatch.gate.budget import MemoryBudget
from chainwatch.gate.check import Checker
from chainwatch.gate.policy import Policy
from chainwatch.gate.scanning import UNPACKED_FACTOR, ScanGate, scan_cost
from chainwatch.intel import BuiltinKnownBad
from chainwatch.model import Level, PackageRef, Verdict
from chainwatch.scan import Scanner
from tests.helpers import make_tgz, manifest

MB = 1024 * 1024


def _doc(name: str, unpacked: int | None) -> dict[str, Any]:
    now = datetime.now(UTC)
    times = {"1.0.0": (now - timedelta(days=20)).isoformat(),
             "1.1.0": (now - timedelta(days=4)).isoformat()}
    dist: dict[str, Any] = {"shasum": "0" * 40}
    if unpacked is not None:
        dist["unpackedSize"] = unpacked
    return {"name": name, "dist-tags": {"latest": "1.1.0"}, "time": times,
            "versions": {v: {"name": name, "version": v, "dist": {
                **dist, "tarball": f"https://registry.example.com/{name}/-/{name}-{v}.tgz"}}
                for v in times}}


class Held(Scanner):
    """Records what the budget held while it ran, and waits to be let go."""

    def __init__(self, budget: MemoryBudget) -> None:
        super().__init__(None, workers=1)
        self.budget = budget
        self.running = threading.Semaphore(0)
        self.go = threading.Event()
        self.seen: list[tuple[str, int, int]] = []
        self.lock = threading.Lock()

    def scan(self, spec: str, against: str | None = None,
             packument: dict[str, Any] | None = None,
             limits: Limits | None = None) -> Verdict:
        assert limits is not None
        with self.lock:
            self.seen.append((spec, self.budget.reserved, limits.max_total_bytes))
        self.running.release()
        self.go.wait(30)
        name, version = spec.rsplit("@", 1)
        return Verdict(target=PackageRef(name, version), level=Level.BENIGN, score=0,
                       explanation="", findings=(), capabilities=())


def test_the_reservation_covers_what_the_archives_unpack_to() -> None:
    budget = MemoryBudget(2048 * MB)
    scanner = Held(budget)
    gate = ScanGate(scanner, None, timedelta(days=30), timeout=60, budget=budget)
    scanner.go.set()
    gate.verdict("big", "1.1.0", _doc("big", 240 * MB), datetime.now(UTC))
    (spec, reserved, limit), = scanner.seen
    assert spec == "big@1.1.0"
    assert limit >= 240 * MB and limit < 320 * MB  # the claim, with its slack
    assert reserved >= UNPACKED_FACTOR * 2 * 240 * MB  # target and baseline, unpacked
    assert budget.reserved == 0  # released when done


def test_concurrent_large_scans_are_admitted_one_at_a_time() -> None:
    budget = MemoryBudget(1024 * MB)
    scanner = Held(budget)
    gate = ScanGate(scanner, None, timedelta(days=30), workers=4, timeout=60, budget=budget)
    docs = {f"p{i}": _doc(f"p{i}", 100 * MB) for i in range(4)}
    assert scan_cost(docs["p0"], "1.1.0")[0] > budget.total // 2  # two never fit at once
    threads = [threading.Thread(target=gate.verdict, args=(n, "1.1.0", d, datetime.now(UTC)))
               for n, d in docs.items()]
    for t in threads:
        t.start()
    assert scanner.running.acquire(timeout=30)
    # with one scan running, no other is admitted (four were, each holding a flat 96 MB)
    assert not scanner.running.acquire(timeout=1.0)
    assert len(scanner.seen) == 1 and budget.reserved <= budget.total
    scanner.go.set()
    for t in threads:
        t.join(30)
    assert len(scanner.seen) == 4
    assert all(reserved <= budget.total for _, reserved, _ in scanner.seen)
    assert budget.reserved == 0


def test_a_scan_larger_than_the_budget_blocks_without_running() -> None:
    budget = MemoryBudget(512 * MB)
    scanner = Held(budget)
    scanner.go.set()
    gate = ScanGate(scanner, None, timedelta(days=30), timeout=5, budget=budget)
    checker = Checker(Policy(min_age="off"), None, BuiltinKnownBad(), scans=gate)
    found = checker.decide("huge", "1.1.0", _doc("huge", 400 * MB), scan=True)
    assert ("block", "scan-error") in {(a, r) for a, r, _ in found}
    assert scanner.seen == []


def test_an_understated_size_is_a_critical_finding_not_a_bigger_scan() -> None:
    doc = _doc("liar", 1024)  # claims 1 KB
    _, limits = scan_cost(doc, "1.1.0")
    data = make_tgz({"package/package.json": manifest("liar", "1.1.0"),
                     "package/blob.bin": os.urandom(limits.max_total_bytes + MB)})
    files = read_tarball(data, "liar@1.1.0", limits=limits)
    assert any(f.rule in ("CW-ARCHIVE-LIMIT", "CW-ARCHIVE-BOMB")
               and f.severity.value == "critical" and str(limits.max_total_bytes) in f.message
               for f in files.findings), files.findings
    assert sum(len(f.data) for f in files.files) <= limits.max_total_bytes


class _Tarballs:
    """A registry client stand-in that serves tarball bytes by URL."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.fetched: list[str] = []

    def tarball(self, url: str, integrity: str | None, shasum: str | None) -> Any:
        from chainwatch.registry.client import Tarball
        self.fetched.append(url)
        return Tarball(self.blobs[url])


def test_without_unpacked_size_the_tarball_says_what_it_unpacks_to() -> None:
    """A packument without dist.unpackedSize (older or non-npm publishers, stripping mirrors):
    the reservation and the archive limit come from the tarball's gzip size field, so a large
    honest release is neither blocked by a default limit nor scanned beyond its reservation."""
    from chainwatch.gate import scanning

    doc = _doc("plain", None)
    blobs = {}
    for version in ("1.0.0", "1.1.0"):
        blobs[doc["versions"][version]["dist"]["tarball"]] = make_tgz({
            "package/package.json": manifest("plain", version),
            "package/blob.bin": b"x" * (3 * MB)})
    data = blobs[doc["versions"]["1.1.0"]["dist"]["tarball"]]
    measured = scanning.gzip_unpacked(data)
    assert measured is not None and 3 * MB < measured < 4 * MB  # the tar stream's own size
    budget = MemoryBudget(2048 * MB)
    scanner = Held(budget)
    scanner.client = _Tarballs(blobs)  # type: ignore[assignment]
    scanner.go.set()
    gate = ScanGate(scanner, None, timedelta(days=30), timeout=60, budget=budget)
    gate.verdict("plain", "1.1.0", doc, datetime.now(UTC))
    (_, reserved, limit), = scanner.seen
    assert measured <= limit < scanning.DEFAULT_UNPACKED  # measured, not the 64 MB default
    assert reserved < scanning.SCAN_RESERVE + UNPACKED_FACTOR * 2 * scanning.DEFAULT_UNPACKED
    assert len(scanner.client.fetched) == 2  # type: ignore[attr-defined]
    files = read_tarball(data, "plain@1.1.0", limits=Limits(max_total_bytes=limit))
    assert not [f for f in files.findings if f.severity.value == "critical"]


def test_a_gzip_size_field_that_lies_is_a_critical_finding() -> None:
    from chainwatch.gate import scanning

    honest = make_tgz({"package/package.json": manifest("liar", "1.1.0"),
                       "package/blob.bin": os.urandom(4 * MB)})
    lying = honest[:-4] + (1024).to_bytes(4, "little")  # says it unpacks to 1 KB
    size = scanning.gzip_unpacked(lying)
    assert size == 1024
    limit = int(size * scanning.UNPACKED_SLACK) + MB
    files = read_tarball(lying, "liar@1.1.0", limits=Limits(max_total_bytes=limit))
    assert any(f.severity.value == "critical" for f in files.findings), files.findings
