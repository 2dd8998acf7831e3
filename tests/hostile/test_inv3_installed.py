"""``inventory path/to/node_modules``: an installed tree, package roots only (issue 12 A).

Before: the folder itself was walked like a source tree, so every installed package's
``package.json`` became a project manifest of its own: its declared *ranges* were reported as
versions (67 of 74 packages for a 21-package npm install) and fixtures inside packages became
environments. Now only package roots count, npm's hidden lockfile is used when it agrees with
the disk, links never lead out of the tree, and depth and count are bounded (fail closed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chainwatch.inventory import tree_reader
from chainwatch.inventory.walk import FileError, walk
from chainwatch.model import Environment


def _pkg(folder: Path, name: str, version: str, **extra: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text(json.dumps({"name": name, "version": version, **extra}))
    return folder


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    _pkg(root, "app", "1.0.0", dependencies={"a": "^1.0.0"}, devDependencies={"t": "^2"})
    a = _pkg(root / "node_modules" / "a", "a", "1.0.0", dependencies={"debug": "^4", "@s/b": "^1"},
             devDependencies={"mocha": "^10"})
    # what lives inside a package but is not a package root
    _pkg(a / "test" / "fixtures" / "evil", "evil-fixture", "6.6.6")
    _pkg(a / "examples", "example", "0.0.1", dependencies={"left-pad": "^1.3.0"})
    _pkg(a / "node_modules" / "debug", "debug", "4.4.2", dependencies={"ms": "^2.1.3"})
    _pkg(root / "node_modules" / "ms", "ms", "2.1.3")
    _pkg(root / "node_modules" / "@s" / "b", "@s/b", "1.2.0")
    _pkg(root / "node_modules" / "t", "t", "2.0.0")
    (root / "node_modules" / ".bin").mkdir()
    (root / "node_modules" / ".cache" / "x").mkdir(parents=True)
    (root / "node_modules" / ".cache" / "x" / "package.json").write_text('{"name":"c","version":"1.0.0"}')
    return root


def _envs(path: Path) -> tuple[list[Environment], list[FileError]]:
    found = list(walk([path]))
    return ([e for e in found if isinstance(e, Environment)],
            [e for e in found if isinstance(e, FileError)])


def _pairs(env: Environment) -> set[tuple[str, str]]:
    return {(p.name, p.version) for p in env.packages}


WANT = {("a", "1.0.0"), ("debug", "4.4.2"), ("ms", "2.1.3"), ("@s/b", "1.2.0"), ("t", "2.0.0")}


def test_the_folder_itself_is_one_installed_tree_of_package_roots(tmp_path: Path) -> None:
    root = _project(tmp_path)
    envs, errors = _envs(root / "node_modules")
    assert not errors and [e.kind for e in envs] == ["node_modules"]
    assert _pairs(envs[0]) == WANT  # no fixture, example, .cache, range or devDependency
    by_name = {p.name: p for p in envs[0].packages}
    assert by_name["t"].dev and not by_name["debug"].dev
    assert by_name["debug"].paths == (("app", "a", "debug"),)
    # the project folder reads the same tree (plus its own package.json, skipped: no lockfile)
    tree = [e for e in _envs(root)[0] if e.kind == "node_modules"]
    assert len(tree) == 1 and _pairs(tree[0]) == WANT


def test_cli_inventory_of_node_modules_reports_versions_not_ranges(tmp_path: Path) -> None:
    root = _project(tmp_path)
    done = subprocess.run([sys.executable, "-m", "chainwatch", "inventory",
                           str(root / "node_modules"), "--format", "json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [e["kind"] for e in doc["environments"]] == ["node_modules"]
    packages = doc["environments"][0]["packages"]
    assert {(p["name"], p["version"]) for p in packages} == WANT
    assert all(p["exact"] for p in packages)


def test_links_inside_the_tree_are_resolved_and_links_out_are_never_followed(
        tmp_path: Path) -> None:
    root = tmp_path / "app"
    _pkg(root, "app", "1.0.0", dependencies={"chalk": "^5", "evil": "*", "lib": "*"})
    store = root / "node_modules" / ".pnpm"
    chalk = _pkg(store / "chalk@5.6.1" / "node_modules" / "chalk", "chalk", "5.6.1",
                 dependencies={"ansi": "^1"})
    _pkg(store / "ansi@1.0.0" / "node_modules" / "ansi", "ansi", "1.0.0")
    os.symlink("../../ansi@1.0.0/node_modules/ansi", chalk.parent / "ansi")
    os.symlink(".pnpm/chalk@5.6.1/node_modules/chalk", root / "node_modules" / "chalk")
    outside = _pkg(tmp_path / "outside" / "evil", "evil", "6.6.6")
    os.symlink(outside, root / "node_modules" / "evil")
    os.symlink(outside, store / "evil@6.6.6")  # a store entry that leaves the tree
    os.symlink(tmp_path / "outside", root / "node_modules" / "@evil")  # a scope folder link
    _pkg(root / "packages" / "lib", "lib", "1.0.0")
    os.symlink("../packages/lib", root / "node_modules" / "lib")  # a workspace
    envs, errors = _envs(root / "node_modules")
    # a link out of the project is never followed, and never silent: Node would load it
    # (before: dropped without a word, so a known-bad package behind it went unreported)
    assert any("node_modules/evil: links out of the project" in e.message for e in errors), errors
    assert not any("packages/lib" in e.message for e in errors), errors  # a workspace is the project's
    assert _pairs(envs[0]) == {("chalk", "5.6.1"), ("ansi", "1.0.0")}
    ansi = next(p for p in envs[0].packages if p.name == "ansi")
    assert ansi.paths == (("app", "chalk", "ansi"),) and not ansi.dev


def test_depth_and_count_are_bounded_and_fail_closed(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "deep"
    folder = root / "node_modules"
    for level in range(tree_reader.MAX_DEPTH + 3):
        folder = _pkg(folder / f"p{level}", f"p{level}", "1.0.0") / "node_modules"
    envs, errors = _envs(root / "node_modules")
    assert len(envs) == 1 and len(envs[0].packages) == tree_reader.MAX_DEPTH + 1
    assert len(errors) == 1 and "nested deeper than" in errors[0].message
    monkeypatch.setattr(tree_reader, "MAX_PACKAGES", 3)
    envs, errors = _envs(_project(tmp_path) / "node_modules")
    assert len(envs[0].packages) == 3 and "more than 3 installed packages" in errors[0].message


def test_a_bad_package_root_is_a_per_entry_error(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "node_modules" / "t" / "package.json").write_text('{"name": 5, "version": {}}')
    (root / "node_modules" / "ms" / "package.json").write_text("{not json")
    envs, _ = _envs(root / "node_modules")
    assert _pairs(envs[0]) == WANT - {("t", "2.0.0"), ("ms", "2.1.3")}
    assert any("node_modules/t:" in e for e in envs[0].errors)
    assert any("node_modules/ms:" in e and "JSON" in e for e in envs[0].errors)


def _hidden(root: Path, packages: dict[str, dict[str, object]]) -> None:
    (root / "node_modules" / ".package-lock.json").write_text(json.dumps(
        {"name": "app", "lockfileVersion": 3, "requires": True, "packages": packages}))


LOCKED: dict[str, dict[str, object]] = {
    "node_modules/a": {"version": "1.0.0", "integrity": "sha512-YQ==",
                       "dependencies": {"debug": "^4", "@s/b": "^1"}},
    "node_modules/a/node_modules/debug": {"version": "4.4.2", "integrity": "sha512-ZA==",
                                          "dependencies": {"ms": "^2.1.3"}},
    "node_modules/ms": {"version": "2.1.3", "integrity": "sha512-bQ=="},
    "node_modules/@s/b": {"version": "1.2.0", "integrity": "sha512-Yg=="},
    "node_modules/t": {"version": "2.0.0", "dev": True, "integrity": "sha512-dA=="},
}


def test_a_hidden_lockfile_that_agrees_with_the_disk_is_used(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _hidden(root, LOCKED)
    envs, errors = _envs(root / "node_modules")
    assert not errors and not envs[0].errors and _pairs(envs[0]) == WANT
    assert {p.name: p.integrity for p in envs[0].packages}["debug"] == "sha512-ZA=="


@pytest.mark.parametrize("lie", ["hide", "downgrade", "add"])
def test_a_hidden_lockfile_that_lies_is_not_believed(tmp_path: Path, lie: str) -> None:
    root = _project(tmp_path)
    packages = json.loads(json.dumps(LOCKED))
    if lie == "hide":  # the installed debug@4.4.2 is left out
        packages.pop("node_modules/a/node_modules/debug")
    elif lie == "downgrade":  # claims an older, harmless version
        packages["node_modules/a/node_modules/debug"]["version"] = "4.4.1"
    else:
        packages["node_modules/ghost"] = {"version": "1.0.0"}
    _hidden(root, packages)
    envs, _ = _envs(root / "node_modules")
    assert _pairs(envs[0]) == WANT  # what is on disk
    assert any("does not match the installed packages" in e for e in envs[0].errors)
    assert not any(p.integrity for p in envs[0].packages)
