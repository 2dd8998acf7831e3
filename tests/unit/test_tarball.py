"""Hostile tarballs give findings or a clear error, within bounded time and memory."""

from __future__ import annotations

import contextlib
import gzip
import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainwatch.archive import Limits, read_tarball
from chainwatch.errors import UnsafeArchiveError
from tests.helpers import make_tgz, manifest


def _tar(entries: list[tarfile.TarInfo], payload: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info in entries:
            if info.isreg():
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _rules(data: bytes, limits: Limits | None = None) -> set[str]:
    return {f.rule for f in read_tarball(data, limits=limits).findings}


def test_reads_files_and_strips_the_first_component() -> None:
    files = read_tarball(make_tgz({"package.json": manifest(), "lib/a.js": "1"}))
    assert sorted(f.path for f in files.files) == ["lib/a.js", "package.json"]
    assert not files.findings
    assert files.sha512


@pytest.mark.parametrize(("name", "rule"), [
    ("package/../../etc/passwd", "CW-ARCHIVE-UNSAFE-PATH"),
    ("/etc/cron.d/x", "CW-ARCHIVE-UNSAFE-PATH"),
])
def test_unsafe_paths_are_findings(name: str, rule: str) -> None:
    ok = tarfile.TarInfo("package/package.json")
    bad = tarfile.TarInfo(name)
    assert rule in _rules(_tar([ok, bad]))


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_links_are_findings_never_followed(kind: bytes) -> None:
    link = tarfile.TarInfo("package/id_rsa")
    link.type = kind
    link.linkname = "/root/.ssh/id_rsa"
    data = _tar([tarfile.TarInfo("package/package.json"), link])
    files = read_tarball(data)
    assert "CW-ARCHIVE-LINK" in {f.rule for f in files.findings}
    assert all(f.path != "id_rsa" for f in files.files)


def test_device_entries_are_findings() -> None:
    dev = tarfile.TarInfo("package/null")
    dev.type = tarfile.CHRTYPE
    assert "CW-ARCHIVE-DEVICE" in _rules(_tar([tarfile.TarInfo("package/package.json"), dev]))


def test_decompression_bomb_is_stopped() -> None:
    limits = Limits(max_total_bytes=50_000_000, ratio_floor_bytes=1_000_000, max_ratio=100)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("package/zeros.js")
        info.size = 40_000_000
        tar.addfile(info, io.BytesIO(b"\0" * info.size))
    bomb = gzip.compress(raw.getvalue(), compresslevel=9)
    assert len(bomb) < 200_000
    assert "CW-ARCHIVE-BOMB" in _rules(bomb, limits)


def test_entry_count_is_capped() -> None:
    data = make_tgz({f"f{i}.js": "1" for i in range(50)})
    files = read_tarball(data, limits=Limits(max_entries=10))
    assert len(files.files) == 10
    assert "CW-ARCHIVE-LIMIT" in {f.rule for f in files.findings}


def test_oversized_file_is_skipped_with_a_finding() -> None:
    data = make_tgz({"package.json": manifest(), "big.js": "a" * 5000})
    files = read_tarball(data, limits=Limits(max_file_bytes=1000))
    assert [f.path for f in files.files] == ["package.json"]
    assert "CW-ARCHIVE-LIMIT" in {f.rule for f in files.findings}


def test_truncated_archive_keeps_what_was_read() -> None:
    data = make_tgz({"package.json": manifest(), "b.js": "x" * 20000})
    raw = gzip.decompress(data)
    truncated = gzip.compress(raw[: len(raw) // 2])
    files = read_tarball(truncated)
    assert files.get("package.json") is not None


def test_non_utf8_content_is_tolerated() -> None:
    files = read_tarball(make_tgz({"package.json": manifest(), "a.js": b"\xff\xfe\x00bad"}))
    assert files.get("a.js") is not None
    assert "\ufffd" in files.get("a.js").text()  # type: ignore[union-attr]


def test_garbage_is_a_clear_error() -> None:
    with pytest.raises(UnsafeArchiveError):
        read_tarball(b"\x1f\x8bnot really gzip at all")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=4096))
def test_fuzz_never_crashes(blob: bytes) -> None:
    for data in (blob, gzip.compress(blob)):
        with contextlib.suppress(UnsafeArchiveError):
            read_tarball(data)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.binary(min_size=1, max_size=64))
def test_fuzz_corrupted_real_archive(position: int, junk: bytes) -> None:
    data = bytearray(make_tgz({"package.json": manifest(), "index.js": "module.exports=1;" * 50}))
    position %= len(data)
    data[position : position + len(junk)] = junk
    with contextlib.suppress(UnsafeArchiveError):
        read_tarball(bytes(data))
