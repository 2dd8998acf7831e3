"""Lockfiles written by the real package managers; chainwatch must list exactly what they list.

Built once per manifest with ``--package-lock-only --ignore-scripts`` (nothing is installed or
run) and cached; skipped cleanly when the tool or the registry is not available.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chainwatch.inventory.walk import walk
from chainwatch.model import Environment
from tests.integration.conftest import FIXTURE_CACHE

MANIFEST: dict[str, Any] = {
    "name": "fixture-app", "version": "1.0.0", "private": True,
    "dependencies": {"chalk": "^4.1.2", "debug": "^4.3.4",
                     "string-width-cjs": "npm:string-width@^4.2.3"},
    "devDependencies": {"semver": "^7.6.0"},
    "optionalDependencies": {"fsevents": "^2.3.3"},
    "workspaces": ["packages/*"],
}
WORKSPACE = {"name": "lib", "version": "1.0.0", "dependencies": {"ms": "^2.1.3", "chalk": "^2.4.2"}}
ALIASES = {"string-width-cjs": "string-width"}


def _project(tool: str) -> Path:
    key = hashlib.sha256(json.dumps([tool, MANIFEST, WORKSPACE]).encode()).hexdigest()[:16]
    folder = FIXTURE_CACHE / "lockfiles" / f"{tool}-{key}"
    (folder / "packages" / "lib").mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text(json.dumps(MANIFEST, indent=2))
    (folder / "packages" / "lib" / "package.json").write_text(json.dumps(WORKSPACE, indent=2))
    return folder


@pytest.fixture(scope="module")
def npm_project() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm not installed")
    folder = _project("npm")
    if not (folder / "package-lock.json").exists():
        done = subprocess.run([npm, "install", "--package-lock-only", "--ignore-scripts",
                               "--no-audit", "--no-fund"], cwd=folder, capture_output=True,
                              text=True, timeout=300, check=False)
        if done.returncode != 0:
            pytest.skip(f"npm could not resolve the fixture (registry unreachable?): "
                        f"{done.stderr[-300:]}")
    return folder


def _npm_truth(folder: Path) -> set[tuple[str, str]]:
    done = subprocess.run([shutil.which("npm") or "npm", "ls", "--all", "--json",
                           "--package-lock-only"], cwd=folder, capture_output=True, text=True,
                          timeout=120, check=False)
    tree = json.loads(done.stdout)
    found: set[tuple[str, str]] = set()

    def visit(deps: dict[str, Any]) -> None:
        for name, info in deps.items():
            if "version" in info and not str(info.get("resolved", "")).startswith("file:"):
                found.add((ALIASES.get(name, name), info["version"]))
            visit(info.get("dependencies") or {})

    visit(tree.get("dependencies") or {})
    return found


def test_npm_lockfile_matches_npm_ls(npm_project: Path) -> None:
    envs = [e for e in walk([npm_project / "package-lock.json"]) if isinstance(e, Environment)]
    ours = {(p.name, p.version) for p in envs[0].packages}
    assert ours == _npm_truth(npm_project)
    by_name = {(p.name, p.version): p for p in envs[0].packages}
    assert by_name[("semver", max(v for n, v in ours if n == "semver"))].dev
    chalk2 = by_name[("chalk", "2.4.2")]
    assert ("packages/lib", "chalk") in chalk2.paths and not chalk2.dev  # importer = its folder


def _built(tool: str, command: list[str], lockfile: str) -> Path:
    """A project installed by ``command`` (scripts ignored), cached; skip when it cannot run."""
    if shutil.which("npx") is None:
        pytest.skip("npx not installed")
    folder = _project(tool)
    if tool.startswith("pnpm"):
        (folder / "pnpm-workspace.yaml").write_text('packages:\n  - "packages/*"\n')
    if not (folder / lockfile).exists() or not (folder / "node_modules").exists():
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600,
                              check=False)
        if done.returncode != 0 or not (folder / lockfile).exists():
            pytest.skip(f"{tool} could not build the fixture (registry unreachable?): "
                        f"{done.stderr[-300:]}")
    return folder


def _ours(path: Path) -> Environment:
    envs = [e for e in walk([path]) if isinstance(e, Environment)]
    assert len(envs) == 1, [e.source for e in envs]
    return envs[0]


def _pnpm_truth(folder: Path) -> set[tuple[str, str]]:
    done = subprocess.run(["npx", "--yes", "pnpm@9", "ls", "-r", "--depth", "Infinity", "--json"],
                          cwd=folder, capture_output=True, text=True, timeout=300, check=False)
    found: set[tuple[str, str]] = set()

    def visit(deps: dict[str, Any]) -> None:
        for name, info in deps.items():
            version = str(info.get("version", ""))
            if version and not version.startswith(("link:", "file:")):
                found.add((str(info.get("from") or name), version))
            for key in ("dependencies", "optionalDependencies"):
                visit(info.get(key) or {})

    for project in json.loads(done.stdout):
        for key in ("dependencies", "devDependencies", "optionalDependencies"):
            visit(project.get(key) or {})
    return found


def test_pnpm9_lockfile_and_node_modules_match_pnpm_ls() -> None:
    folder = _built("pnpm9", ["npx", "--yes", "pnpm@9", "install", "--ignore-scripts",
                              "--reporter=silent"], "pnpm-lock.yaml")
    truth = _pnpm_truth(folder)
    lock = _ours(folder / "pnpm-lock.yaml")
    ours = {(p.name, p.version) for p in lock.packages}
    optional = {(p.name, p.version) for p in lock.packages if p.optional}
    # the lockfile also records optional platform packages pnpm did not install here
    assert truth <= ours and ours - truth <= optional
    tree = [e for e in walk([folder]) if isinstance(e, Environment) and e.kind == "node_modules"]
    installed = {(p.name, p.version) for p in tree[0].packages}
    # pnpm ls also names optional packages it skipped on this platform (fsevents)
    assert installed <= truth and truth - installed <= optional


def test_yarn1_lockfile_matches_yarn_list() -> None:
    folder = _built("yarn1", ["npx", "--yes", "yarn@1", "install", "--ignore-scripts",
                              "--non-interactive", "--silent"], "yarn.lock")
    done = subprocess.run(["npx", "--yes", "yarn@1", "list", "--json", "--silent"], cwd=folder,
                          capture_output=True, text=True, timeout=300, check=False)
    truth: set[tuple[str, str]] = set()

    def visit(trees: list[dict[str, Any]]) -> None:
        for tree in trees:
            if not tree.get("shadow"):
                name, _, version = str(tree["name"]).rpartition("@")
                truth.add((ALIASES.get(name, name), version))
            visit(tree.get("children") or [])

    visit(json.loads(done.stdout.splitlines()[-1])["data"]["trees"])
    lock = _ours(folder / "yarn.lock")
    ours = {(p.name, p.version) for p in lock.packages}
    optional = {(p.name, p.version) for p in lock.packages if p.optional}
    assert truth - {("lib", "1.0.0")} <= ours and ours - truth <= optional
