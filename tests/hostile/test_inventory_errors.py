"""One bad file never hides the rest (issue 11, item 7).

Before: a type-confused pnpm-lock.yaml in one folder raised ``TypeError`` out of the walk, the
known-bad ``debug@4.4.2`` in the next folder was never reported, and ``check`` exited 1 with a
traceback as if it had blocked. Now every parser error, of any type, is a per-file error, the
rest is read and reported, and the exit code says what happened: 1 when something was flagged,
else 2 when a file could not be read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch.inventory import EXTRACTORS, InventoryError
from chainwatch.inventory import walk as walk_module
from chainwatch.inventory.node_modules import NodeModulesExtractor
from chainwatch.inventory.tree_reader import InstalledTree
from chainwatch.inventory.walk import FileError, walk
from chainwatch.model import Environment
from chainwatch.output.escape import markdown

NO_SIBLING = lambda name: None  # noqa: E731

LOCK_BAD = json.dumps({"name": "svc", "lockfileVersion": 3, "packages": {
    "": {"name": "svc", "dependencies": {"debug": "^4"}},
    "node_modules/debug": {"version": "4.4.2"}}})

#: Files that are the right kind, with the wrong types inside: each once crashed a parser.
CONFUSED: dict[str, str] = {
    "pnpm-lock.yaml": 'lockfileVersion: "9.0"\nimporters: [1, 2]\npackages: 5\n',
    "pnpm-lock-snapshots.yaml": 'lockfileVersion: "9.0"\nsnapshots: {a@1: {dependencies: 7}}\n'
                                'packages: {a@1: {resolution: [1]}}\n'
                                'importers: {.: {dependencies: {a: {version: [1]}}}}\n',
    "yarn.lock": '__metadata:\n  version: 8\n"a@npm:1": {resolution: "a@npm:1.0.0", '
                 'dependencies: [x], dependenciesMeta: {x: 5}, optionalDependencies: 3}\n',
    "bun.lock": '{"lockfileVersion": 1, "workspaces": [1], "packages": '
                '{"a": ["a@1.0.0", 5, {"dependencies": [1, 2]}, 7]}}',
    "package-lock.json": '{"lockfileVersion": 1, "dependencies": {"a": {"version": "1.0.0", '
                         '"requires": 5, "resolved": {"x": 1}}}}',
    "bom.json": '{"bomFormat": "CycloneDX", "metadata": [], "components": '
                '[{"purl": "pkg:npm/a@1", "hashes": 5}], "dependencies": [{"ref": "a", '
                '"dependsOn": 3}]}',
    "sbom.spdx.json": '{"spdxVersion": "SPDX-2.3", "packages": 4, "relationships": {"a": 1}, '
                      '"documentDescribes": 2}',
}


def _file_name(key: str) -> str:
    return "pnpm-lock.yaml" if key.startswith("pnpm-lock") else key


def _extractor_for(name: str) -> Any:
    from pathlib import PurePosixPath

    return next(e for e in EXTRACTORS if e.wants(PurePosixPath(name)))


@pytest.mark.parametrize("key", sorted(CONFUSED))
def test_type_confused_files_are_read_or_refused_clearly(key: str) -> None:
    name = _file_name(key)
    try:
        env = _extractor_for(name).extract(name, CONFUSED[key].encode(), NO_SIBLING)
    except InventoryError:
        return
    assert isinstance(env, Environment)
    for p in env.packages:  # what is read is well-typed
        assert isinstance(p.name, str) and isinstance(p.version, str)
        assert p.resolved is None or isinstance(p.resolved, str)
        assert p.integrity is None or isinstance(p.integrity, str)


def _run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHAINWATCH_CACHE_DIR": str(home), "CHAINWATCH_DATA_DIR": str(home),
           "CHAINWATCH_DB": f"sqlite:///{home}/cw.db", "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "chainwatch", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def _two_folders(tmp_path: Path, bad_name: str, bad_text: str) -> Path:
    root = tmp_path / "repos"
    (root / "a").mkdir(parents=True)
    (root / "a" / bad_name).write_text(bad_text)
    (root / "b").mkdir()
    (root / "b" / "package-lock.json").write_text(LOCK_BAD)
    return root


@pytest.mark.parametrize("key", ["pnpm-lock.yaml", "yarn.lock", "bun.lock"])
def test_exposure_reports_the_next_folder_and_the_bad_file(tmp_path: Path, key: str) -> None:
    root = _two_folders(tmp_path, _file_name(key), CONFUSED[key])
    r = _run("exposure", str(root), "--format", "json", home=tmp_path)
    assert "Traceback" not in r.stderr
    assert r.returncode == 1, r.stderr  # the known-bad was found: flagged wins
    doc = json.loads(r.stdout)
    hits = {(h["name"], h["version"]) for e in doc["environments"] for h in e["hits"]}
    assert hits == {("debug", "4.4.2")}
    # the confused file is either read (its well-typed parts) or named as an error: never lost
    seen = [e["source"] for e in doc["errors"]] + [e["source"] for e in doc["environments"]]
    assert str(root / "a" / _file_name(key)) in seen


def test_check_blocks_the_next_folder_and_names_the_bad_file(tmp_path: Path) -> None:
    root = _two_folders(tmp_path, "pnpm-lock.yaml", CONFUSED["pnpm-lock.yaml"])
    r = _run("check", str(root), "--offline", "--no-scan", "--format", "json", home=tmp_path)
    assert "Traceback" not in r.stderr
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["summary"]["blocked"] == 1
    assert [e["source"] for e in doc["errors"]] == [str(root / "a" / "pnpm-lock.yaml")]
    assert f"error: {root / 'a' / 'pnpm-lock.yaml'}:" in r.stderr


def test_an_unreadable_file_alone_is_exit_2_not_clean(tmp_path: Path) -> None:
    root = tmp_path / "repos"
    (root / "a").mkdir(parents=True)
    (root / "a" / "pnpm-lock.yaml").write_text(CONFUSED["pnpm-lock.yaml"])
    (root / "c").mkdir()
    (root / "c" / "package-lock.json").write_text(json.dumps(
        {"lockfileVersion": 3, "packages": {"node_modules/ms": {"version": "2.1.3"}}}))
    # ms cannot be judged --offline without a cache: blocked (exit 1) unless the policy opts
    # into warnings, which leaves the unreadable file to decide the exit code
    policy = tmp_path / "offline-warn.toml"
    policy.write_text('offline = "warn"\n')
    for command in (["inventory"], ["exposure"],
                    ["check", "--offline", "--no-scan", "--policy", str(policy)]):
        r = _run(*command, str(root), home=tmp_path)
        assert "Traceback" not in r.stderr, command
        assert r.returncode == 2, (command, r.stderr)
        assert any(line.startswith("error: ") and "pnpm-lock.yaml" in line
                   for line in r.stderr.splitlines()), r.stderr


def test_any_parser_exception_is_a_per_file_error(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The walker's net: a bug of any type in a parser costs one file, not the run."""

    class Exploding:
        kind = "boom"

        def wants(self, path: object) -> bool:
            return str(path).endswith("boom.json")

        def extract(self, source: str, data: bytes, sibling: object) -> Environment:
            raise KeyError("surprise")

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "boom.json").write_text("{}")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "package-lock.json").write_text(LOCK_BAD)
    results = list(walk([tmp_path], extractors=(Exploding(), *EXTRACTORS)))
    errors = [r for r in results if isinstance(r, FileError)]
    assert len(errors) == 1 and "KeyError" in errors[0].message
    assert any(isinstance(r, Environment) and r.packages for r in results)

    def broken_tree(*args: object) -> Environment:
        raise AttributeError("tree")

    monkeypatch.setattr(NodeModulesExtractor, "extract_tree", broken_tree)
    (tmp_path / "b" / "node_modules" / "x").mkdir(parents=True)
    results = list(walk([tmp_path]))
    assert any(isinstance(r, FileError) and "AttributeError" in r.message for r in results)
    assert walk_module  # the module under test


# -- fuzzing: type-confused structures in every format --------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False),
                    st.sampled_from(["", "1.0.0", "a@1.0.0", "npm:a@1", "link:x", "@s/n@1",
                                     "/a/1.0.0", "a@npm:1.0.0", "workspace:*", "pkg:npm/a@1",
                                     "x@patch:x@npm%3A1.0.0#p", "node_modules/a"]))
KEYS = st.sampled_from([
    "lockfileVersion", "packages", "snapshots", "importers", "dependencies", "devDependencies",
    "optionalDependencies", "peerDependencies", "requires", "resolution", "resolved",
    "integrity", "version", "name", "link", "dev", "optional", "dependenciesMeta", "checksum",
    "workspaces", "__metadata", "bomFormat", "components", "purl", "hashes", "metadata",
    "component", "dependsOn", "ref", "bom-ref", "scope", "spdxVersion", "externalRefs",
    "referenceType", "referenceLocator", "relationships", "relationshipType", "spdxElementId",
    "relatedSpdxElement", "documentDescribes", "SPDXID", ".", "", "a", "a@1.0.0",
    "node_modules/a", "node_modules/a/node_modules/b", "/a/1.0.0", "a@npm:1.0.0"])
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=25)
DOCS = st.dictionaries(KEYS, VALUES, max_size=6)
HEADERS = st.sampled_from([
    {}, {"lockfileVersion": 3}, {"lockfileVersion": 1}, {"lockfileVersion": "9.0"},
    {"bomFormat": "CycloneDX"}, {"spdxVersion": "SPDX-2.3"},
    {"__metadata": {"version": 8}}])


def _render(name: str, doc: dict[str, Any]) -> bytes:
    if name in ("pnpm-lock.yaml", "yarn.lock"):
        return yaml.safe_dump(doc, default_flow_style=True).encode()
    return json.dumps(doc).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HEADERS, DOCS, st.sampled_from(["package-lock.json", "pnpm-lock.yaml", "yarn.lock",
                                       "bun.lock", "bom.json", "x.spdx.json", "package.json"]))
def test_fuzz_type_confused_structures_raise_only_inventory_errors(
        header: dict[str, Any], doc: dict[str, Any], name: str) -> None:
    data = _render(name, {**header, **doc})
    sibling = lambda n: json.dumps(doc).encode() if n == "package.json" else None  # noqa: E731
    try:
        env = _extractor_for(name).extract(name, data, sibling if name != "package.json"
                                           else NO_SIBLING)
    except InventoryError:
        return
    for p in env.packages:
        assert isinstance(p.name, str) and isinstance(p.version, str)
        assert p.resolved is None or isinstance(p.resolved, str)
        assert p.integrity is None or isinstance(p.integrity, str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["node_modules/a", "node_modules/@s/b",
                                        "node_modules/a/node_modules/c"]),
                       VALUES.map(lambda v: json.dumps(v).encode()), max_size=3),
       st.one_of(st.none(), VALUES.map(lambda v: json.dumps(v).encode())),
       st.one_of(st.none(), VALUES.map(lambda v: json.dumps({"packages": v}).encode())))
def test_fuzz_node_modules_trees(files: dict[str, bytes], project: bytes | None,
                                 hidden: bytes | None) -> None:
    tree = InstalledTree(manifests=dict(files), hidden_lock=hidden)
    env = NodeModulesExtractor().extract_tree("node_modules", tree, project)
    assert all(isinstance(p.name, str) and isinstance(p.version, str) for p in env.packages)


def test_deeply_nested_json_is_a_clear_error() -> None:
    deep = ('{"lockfileVersion": 3, "packages": ' + "[" * 200_000 + "]" * 200_000 + "}").encode()
    for name in ("package-lock.json", "bun.lock", "bom.json"):
        with pytest.raises(InventoryError):
            _extractor_for(name).extract(name, deep, NO_SIBLING)


@pytest.mark.parametrize("fmt", ["sarif", "markdown"])
def test_exposure_reports_name_the_unread_file(tmp_path: Path, fmt: str) -> None:
    root = _two_folders(tmp_path, "pnpm-lock.yaml", 'lockfileVersion: "9.0"\npackages: 5\n')
    r = _run("exposure", str(root), "--format", fmt, home=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    bad = str(root / "a" / "pnpm-lock.yaml")
    if fmt == "markdown":
        assert "1 file could not be read" in r.stdout and markdown(bad) in r.stdout
        assert "debug" in r.stdout
        return
    run = json.loads(r.stdout)["runs"][0]
    assert [x["ruleId"] for x in run["results"]] == ["CW-EXPOSURE-KNOWN-BAD"]
    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is False
    notes = invocation["toolExecutionNotifications"]
    assert [n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for n in notes] == [
        bad]


@pytest.mark.parametrize("fmt", ["github", "sarif"])
def test_check_ci_reports_name_the_unread_file(tmp_path: Path, fmt: str) -> None:
    root = _two_folders(tmp_path, "pnpm-lock.yaml", CONFUSED["pnpm-lock.yaml"])
    r = _run("check", str(root), "--offline", "--no-scan", "--format", fmt, home=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    bad = str(root / "a" / "pnpm-lock.yaml")
    if fmt == "github":
        unread = [line for line in r.stdout.splitlines() if "could not read" in line]
        assert len(unread) == 1 and unread[0].startswith("::error file=")
        assert bad.replace(":", "%3A") in unread[0]
        assert any("known-bad" in line for line in r.stdout.splitlines())
        return
    run = json.loads(r.stdout)["runs"][0]
    assert "CW-POLICY-KNOWN-BAD" in {x["ruleId"] for x in run["results"]}
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert [n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for n in notes] == [
        bad]
