"""Archives built to cost time or memory: the reader stays linear and bounded, and a limit
that leaves anything unread is a CRITICAL finding (the release blocks)."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from chainwatch.archive import Limits, read_tarball
from chainwatch.model import PackageFiles, Severity
from tests.hostile.tarcraft import END, entry, header, pad, pax, tgz

PKG = entry("package/package.json", b'{"name":"x","version":"1.0.0"}')


def _body(i: int) -> bytes:
    # a little entropy per entry, so these stay far below the compression-ratio limits
    return hashlib.sha256(str(i).encode()).hexdigest().encode()


def _critical(files: PackageFiles, rule: str) -> bool:
    return any(f.rule == rule and f.severity is Severity.CRITICAL for f in files.findings)


def _timed(data: bytes, limits: Limits | None = None) -> tuple[PackageFiles, float, int]:
    """Read; return the result, the seconds it took (tracing memory slows this about 2x,
    the bounds allow for it and for a loaded CI machine), and the peak traced memory."""
    tracemalloc.start()
    try:
        start = time.perf_counter()
        files = read_tarball(data, limits=limits)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return files, elapsed, peak


_MEASURE = """
import json, resource, sys, time
from chainwatch.archive import read_tarball
from chainwatch.model import Severity
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
files = read_tarball(data)
print(json.dumps({
    "seconds": time.perf_counter() - start,
    "rss_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
    "files": len(files.files),
    "critical": sorted({f.rule for f in files.findings if f.severity is Severity.CRITICAL}),
}))
"""


def _measure(data: bytes, tmp_path: Path) -> dict[str, Any]:
    """Read in a fresh process (no tracing overhead): seconds, peak-RSS growth, outcome."""
    archive = tmp_path / "bomb.tgz"
    archive.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(archive)], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def _duplicated(n: int) -> bytes:
    """n distinct files, then each of them again with other content: n duplicate entries.
    (The old reader rebuilt its file list per duplicate: n x n.)"""
    first = [entry(f"package/f{i}.js", _body(i)) for i in range(n)]
    again = [entry(f"package/f{i}.js", _body(-i - 1)) for i in range(n)]
    return tgz(PKG, *first, *again, END)


def test_20k_duplicates_are_linear_and_the_last_copy_wins() -> None:
    n = 20_000
    files = read_tarball(_duplicated(n))
    assert len(files.files) == n + 1
    for i in (0, n // 2, n - 1):
        assert files.get(f"f{i}.js").data == _body(-i - 1)  # type: ignore[union-attr]
    duplicates = [f for f in files.findings if f.rule == "CW-ARCHIVE-DUPLICATE"]
    assert 1 <= len(duplicates) <= 21  # reported, but not 20,000 findings
    assert str(n - 20) in duplicates[-1].message


def test_20k_duplicates_time_and_memory(tmp_path: Path) -> None:
    """Was 43 s in the issue (120 s on a loaded CI box, +107 MiB): quadratic list rebuilding."""
    result = _measure(_duplicated(20_000), tmp_path)
    assert result["files"] == 20_001
    assert result["seconds"] < 20, result
    assert result["rss_growth_kib"] < 100 * 1024, result


@pytest.fixture(scope="module")
def hundred_k() -> bytes:
    raw = b"".join([PKG, *(entry(f"package/f{i}.js", _body(i)[:8]) for i in range(100_000)), END])
    return gzip.compress(raw, compresslevel=1, mtime=0)


def test_100k_entries_are_bounded_and_the_cap_blocks(hundred_k: bytes, tmp_path: Path) -> None:
    result = _measure(hundred_k, tmp_path)
    assert result["files"] == 100_000  # the default cap: package.json + 99,999 files
    assert "CW-ARCHIVE-LIMIT" in result["critical"]
    assert result["seconds"] < 60, f"100k entries took {result['seconds']:.1f}s"
    # was +333 MiB with tarfile (its member list); 1 MiB of file data here
    assert result["rss_growth_kib"] < 200 * 1024, result


def test_entry_cap_is_critical_and_stops_early(hundred_k: bytes) -> None:
    files, elapsed, _ = _timed(hundred_k, Limits(max_entries=1000))
    assert len(files.files) == 1000
    assert _critical(files, "CW-ARCHIVE-LIMIT")
    assert elapsed < 5


def test_invalid_headers_are_bounded_too() -> None:
    """Bad-checksum headers are skipped as node-tar does, but they count against a budget."""
    junk = header("package/junk.js", 0, cksum=1)
    data = tgz(PKG, junk * 10_000, entry("package/late.js", b"1"), END)
    files = read_tarball(data, limits=Limits(max_entries=1000))
    assert _critical(files, "CW-ARCHIVE-LIMIT")
    assert files.get("late.js") is None
    invalid = [f for f in files.findings if f.rule == "CW-ARCHIVE-INVALID-HEADER"]
    assert len(invalid) <= 21


def test_compression_ratio_npm_refuses_is_a_bomb() -> None:
    """node-tar aborts above 1000:1; a smaller bomb than our own floor is still refused."""
    body = b"\0" * 8_000_000
    data = gzip.compress(PKG + header("package/zeros.js", len(body)) + pad(body) + END, 9)
    assert len(data) * 1000 < 8_000_000
    files = read_tarball(data)
    assert _critical(files, "CW-ARCHIVE-BOMB")
    assert files.get("zeros.js") is None


def test_oversized_file_blocks() -> None:
    data = tgz(PKG, entry("package/big.js", b"a" * 5000), END)
    files = read_tarball(data, limits=Limits(max_file_bytes=1000))
    assert files.get("big.js") is None
    assert _critical(files, "CW-ARCHIVE-LIMIT")


def test_total_size_cap_blocks() -> None:
    parts = [entry(f"package/f{i}.js", _body(i) * 40) for i in range(50)]
    files = read_tarball(tgz(PKG, *parts, END), limits=Limits(max_total_bytes=20_000))
    assert _critical(files, "CW-ARCHIVE-LIMIT") or _critical(files, "CW-ARCHIVE-BOMB")
    assert len(files.files) < 51


def test_duplicates_scale_linearly() -> None:
    """Four times the duplicates may cost about four times as long, not sixteen (quadratic)."""

    def best_of_two(n: int) -> float:
        data = _duplicated(n)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            read_tarball(data)
            times.append(time.perf_counter() - start)
        return min(times)

    small, large = best_of_two(2_000), best_of_two(8_000)
    assert large < 9 * small, f"2k: {small:.2f}s, 8k: {large:.2f}s"


@pytest.mark.parametrize("records", [
    {"path": "package/" + "C:" * 400_000 + "x.js"},       # roots stripped one by one by node
    {"path": "package/" + "/" * 900_000 + "x.js"},        # 900k empty components
    {"linkpath": "C:" * 400_000},                          # the same on a link path
    {"size": "9" * 500_000},                               # a number too long for int()
    {"comment": "1" * 900_000},                            # a record length too long for int()
])
def test_pathological_pax_records_stay_linear(records: dict[str, str]) -> None:
    data = tgz(PKG, pax(records), entry("package/a.js", b"1"), END)
    start = time.perf_counter()
    files = read_tarball(data)
    assert time.perf_counter() - start < 5
    assert files.get("package.json") is not None
