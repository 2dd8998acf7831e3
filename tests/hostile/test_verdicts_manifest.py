"""A hostile package.json: parsed once, under limits, and a failure is one clean line (exit 2)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

import chainwatch.manifest as manifest_module
from chainwatch.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_MANIFEST_DEPTH,
    ManifestError,
    nesting_depth,
    parse_manifest,
)
from chainwatch.output.jsonout import scan_documents
from chainwatch.scan import Scanner
from tests.cli_runner import chainwatch, clean_env
from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz, manifest, write_package


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return chainwatch(*args, env=clean_env(home, COLUMNS="80"))


def deep_manifest(levels: int) -> str:
    return '{"name":"deep","version":"1.0.0","x":' + "[" * levels + "]" * levels + "}"


def test_deep_package_json_is_one_line_and_the_other_targets_are_still_reported(
        tmp_path: Path) -> None:
    deep = tmp_path / "deep.tgz"
    deep.write_bytes(make_tgz({"package.json": deep_manifest(100_000), "index.js": "1;\n"}))
    array = tmp_path / "array.tgz"
    array.write_bytes(make_tgz({"package.json": "[1, 2]", "index.js": "1;\n"}))
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(make_tgz({"package.json": manifest(version="1.0.2"),
                              "index.js": clipper_source()}))
    r = run("scan", str(deep), str(array), str(bad), "--no-remember", "--offline",
            "--format", "json", home=tmp_path)
    assert r.returncode == 1  # bad.tgz is flagged: that wins over the two unreadable targets
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr
    assert len(lines) == 2, r.stderr
    assert any(line.startswith(f"error: {deep}: ") and "nested" in line for line in lines)
    assert any(line.startswith(f"error: {array}: ") and "not an object" in line
               for line in lines)
    run_doc = json.loads(r.stdout)  # the one target that could be read is still reported
    (doc,) = scan_documents(run_doc)
    assert (doc["package"], doc["verdict"]) == ("left-padder", "malicious")
    assert sum("error" in item for item in run_doc["results"]) == 2


@pytest.mark.parametrize(("text", "said"), [
    ("[1, 2]", "not an object"),
    ('"just a string"', "not an object"),
    ("null", "not an object"),
    ('{"name": "x", ', "not valid JSON"),
    (b"\xff\xfe{}".decode("latin-1"), "not valid JSON"),
    (deep_manifest(MAX_MANIFEST_DEPTH + 1), "nested"),
])
def test_unreadable_manifests_are_refused_with_a_reason(text: str, said: str) -> None:
    with pytest.raises(ManifestError, match=said):
        parse_manifest(text.encode("latin-1"))


def test_a_50_mb_string_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    huge = b'{"name":"big","version":"1.0.0","description":"' + b"a" * (50 * 1024 * 1024) + b'"}'
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ManifestError, match="more than"):
        parse_manifest(huge)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 0.5 and peak < 1024 * 1024  # nothing is copied or decoded
    # incompressible, so the archive reader's bomb ratio does not stop it first
    noise = base64.b64encode(os.urandom(38 * 1024 * 1024))
    tgz = tmp_path / "big.tgz"
    tgz.write_bytes(make_tgz({"package.json": b'{"name":"big","description":"' + noise + b'"}',
                              "index.js": "1;\n"}))
    r = run("scan", str(tgz), "--no-remember", "--offline", home=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "bytes, more than" in r.stderr


def test_depth_is_measured_without_recursion_and_strings_do_not_count() -> None:
    assert nesting_depth(json.loads('{"a": "[[[[[[[[", "b": [{"c": "]]]}"}]}')) == 3
    assert nesting_depth("[[[[") == 0 and nesting_depth({}) == 1
    # 900 levels pass json.loads (under the recursion limit) and are still refused
    with pytest.raises(ManifestError, match="nested more than"):
        parse_manifest(deep_manifest(900).encode())
    # just inside the limit still parses
    assert parse_manifest(deep_manifest(MAX_MANIFEST_DEPTH - 2).encode()).name == "deep"


def test_a_wide_manifest_at_the_size_limit_is_read_in_bounded_time_and_memory() -> None:
    body = b'{"name": "wide", "x": [' + b"[]," * (MAX_MANIFEST_BYTES // 3 - 20) + b"[]]}"
    assert len(body) <= MAX_MANIFEST_BYTES
    tracemalloc.start()
    started = time.perf_counter()
    assert parse_manifest(body).name == "wide"
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 20.0  # about 1 s on a loaded CI machine, tracemalloc included
    assert peak < 128 * 1024 * 1024


def test_wrong_types_are_read_as_absent_and_noted(tmp_path: Path) -> None:
    m = parse_manifest(json.dumps({"name": 5, "version": "1.0.0", "main": ["x"],
                                   "scripts": 5, "dependencies": {"a": "1", "b": 2}}).encode())
    assert (m.name, m.version, m.main) == (None, "1.0.0", None)
    assert dict(m.scripts) == {} and dict(m.dependencies) == {"a": "1"}
    assert set(m.problems) == {"name is not a string", "main is not a string",
                               "scripts is not an object",
                               "dependencies has values that are not strings"}
    tgz = tmp_path / "s5.tgz"
    tgz.write_bytes(make_tgz({"package.json": json.dumps(
        {"name": "s5", "version": "1.0.0", "scripts": 5}), "index.js": BENIGN_INDEX}))
    r = run("scan", str(tgz), "--no-remember", "--offline", "--format", "json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    (doc,) = scan_documents(json.loads(r.stdout))
    rules = {f["rule"] for f in doc["findings"]}
    assert "CW-MANIFEST-FIELD-TYPE" in rules and "CW-INSTALL-HOOK" not in rules


def test_package_json_is_parsed_once_per_package(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = manifest_module.parse_manifest

    def counting(data: bytes, where: str = "package.json") -> manifest_module.Manifest:
        calls.append(len(data))
        return real(data, where)

    monkeypatch.setattr(manifest_module, "parse_manifest", counting)
    scripts = {"postinstall": "node setup.js"}
    base = write_package(tmp_path / "base", {
        "package.json": manifest(version="1.0.0", scripts=scripts,
                                 dependencies={"a": "1"}), "index.js": BENIGN_INDEX})
    target = write_package(tmp_path / "target", {
        "package.json": manifest(version="1.0.1", scripts=scripts,
                                 dependencies={"a": "1", "b": "2"}),
        "index.js": BENIGN_INDEX, "setup.js": "require('child_process').exec('id')\n"})
    with Scanner(None, workers=1) as scanner:
        verdict = scanner.scan(str(target), str(base))
    assert verdict.changes is not None and verdict.changes.dependencies_added == {"b": "2"}
    assert any(f.rule == "CW-INSTALL-HOOK" for f in verdict.findings)
    assert len(calls) == 2  # the target's package.json and the baseline's, once each
