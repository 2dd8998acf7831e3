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
from tests.helpers import missing_part
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


def _project(tool: str, manifest: dict[str, Any] | None = None) -> Path:
    manifest = manifest or MANIFEST
    key = hashlib.sha256(json.dumps([tool, manifest, WORKSPACE]).encode()).hexdigest()[:16]
    folder = FIXTURE_CACHE / "lockfiles" / f"{tool}-{key}"
    (folder / "packages" / "lib").mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text(json.dumps(manifest, indent=2))
    (folder / "packages" / "lib" / "package.json").write_text(json.dumps(WORKSPACE, indent=2))
    return folder


@pytest.fixture(scope="module")
def npm_project() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        missing_part("npm not installed")
    folder = _project("npm")
    if not (folder / "package-lock.json").exists():
        done = subprocess.run([npm, "install", "--package-lock-only", "--ignore-scripts",
                               "--no-audit", "--no-fund"], cwd=folder, capture_output=True,
                              text=True, timeout=300, check=False)
        if done.returncode != 0:
            pytest.skip(f"npm could not resolve the fixture (registry unreachable?): "
                        f"{done.stderr[-300:]}")
    return folder


def _npm_truth(folder: Path, lockfile: bool = True) -> set[tuple[str, str]]:
    """What ``npm ls --all`` lists: of the lockfile, or (``lockfile=False``) of node_modules."""
    done = subprocess.run([shutil.which("npm") or "npm", "ls", "--all", "--json",
                           *(["--package-lock-only"] if lockfile else [])], cwd=folder,
                          capture_output=True, text=True, timeout=120, check=False)
    tree = json.loads(done.stdout)
    found: set[tuple[str, str]] = set()

    def visit(deps: dict[str, Any]) -> None:
        for name, info in deps.items():
            if "version" in info and not str(info.get("resolved", "")).startswith("file:"):
                found.add((ALIASES.get(name, name), info["version"]))
            visit(info.get("dependencies") or {})

    visit(tree.get("dependencies") or {})
    return found


@pytest.mark.parametrize("npm_version", ["8", "6"])
def test_older_npm_lockfiles_match_npm_ls(npm_version: str) -> None:
    manifest = dict(MANIFEST)
    if npm_version == "6":
        manifest.pop("workspaces")  # npm 6 has no workspaces
    folder = _built(f"npm{npm_version}", ["npx", "--yes", f"npm@{npm_version}", "install",
                                          "--package-lock-only", "--ignore-scripts",
                                          "--no-audit", "--no-fund"],
                    "package-lock.json", manifest)
    lock = json.loads((folder / "package-lock.json").read_text())
    assert lock["lockfileVersion"] == (2 if npm_version == "8" else 1)
    ours = {(p.name, p.version) for p in _ours(folder / "package-lock.json").packages}
    assert ours == _npm_truth(folder)


def test_npm_lockfile_matches_npm_ls(npm_project: Path) -> None:
    envs = [e for e in walk([npm_project / "package-lock.json"]) if isinstance(e, Environment)]
    ours = {(p.name, p.version) for p in envs[0].packages}
    assert ours == _npm_truth(npm_project)
    by_name = {(p.name, p.version): p for p in envs[0].packages}
    assert by_name[("semver", max(v for n, v in ours if n == "semver"))].dev
    chalk2 = by_name[("chalk", "2.4.2")]
    assert ("packages/lib", "chalk") in chalk2.paths and not chalk2.dev  # importer = its folder


def _built(tool: str, command: list[str], lockfile: str,
           manifest: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Path:
    """A project installed by ``command`` (scripts ignored), cached; skip when it cannot run."""
    if shutil.which("npx") is None:
        missing_part("npx not installed")
    folder = _project(tool, manifest)
    if tool.startswith("pnpm"):
        (folder / "pnpm-workspace.yaml").write_text('packages:\n  - "packages/*"\n')
    if tool.startswith("yarn4"):
        (folder / "yarn.lock").touch()
    needs_tree = tool.startswith(("pnpm", "yarn1", "bun", "npm-tree"))
    if not (folder / lockfile).exists() or (folder / lockfile).stat().st_size == 0 or (
            needs_tree and not (folder / "node_modules").exists()):
        import os

        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600,
                              check=False, env={**os.environ, **(env or {})})
        if done.returncode != 0 or not (folder / lockfile).exists() or not (
                folder / lockfile).stat().st_size:
            pytest.skip(f"{tool} could not build the fixture (registry unreachable?): "
                        f"{done.stderr[-300:]}")
    return folder


def _ours(path: Path) -> Environment:
    envs = [e for e in walk([path]) if isinstance(e, Environment)]
    assert len(envs) == 1, [e.source for e in envs]
    return envs[0]


def _pnpm_truth(folder: Path, version: str) -> set[tuple[str, str]]:
    done = subprocess.run(["npx", "--yes", f"pnpm@{version}", "ls", "-r", "--depth", "Infinity",
                           "--json"],
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


@pytest.mark.parametrize("version", ["8", "9", "10"])
def test_pnpm_lockfile_and_node_modules_match_pnpm_ls(version: str) -> None:
    folder = _built(f"pnpm{version}", ["npx", "--yes", f"pnpm@{version}", "install",
                                       "--ignore-scripts", "--reporter=silent"], "pnpm-lock.yaml")
    truth = _pnpm_truth(folder, version)
    lock = _ours(folder / "pnpm-lock.yaml")
    # exactly: pnpm ls names the lockfile's packages, also those skipped on this platform
    assert {(p.name, p.version) for p in lock.packages} == truth and not lock.errors


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
    truth.discard(("lib", "1.0.0"))  # the workspace itself, not a registry package
    lock = _ours(folder / "yarn.lock")
    assert {(p.name, p.version) for p in lock.packages} == truth and not lock.errors
    # yarn list names packages from the lockfile, also optional ones it skipped on this
    # platform (fsevents); yarn 1 records no platform in its lockfile to tell them exactly
    installed = _pairs(_trees(folder))  # node_modules and the workspace's own
    assert installed <= truth and truth - installed <= {
        (p.name, p.version) for p in lock.packages if p.optional}


def _bun() -> str:
    """The bun binary from the registry package ``@oven/bun-linux-x64`` (its tarball holds it;
    installed with scripts ignored, cached): no install script of any package runs."""
    import platform

    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        missing_part("bun fixture: only linux-x64 is set up")
    npm = shutil.which("npm")
    if npm is None:
        missing_part("npm not installed")
    tools = FIXTURE_CACHE / "tools" / "bun1"
    binary = tools / "node_modules" / "@oven" / "bun-linux-x64" / "bin" / "bun"
    if not binary.exists():
        tools.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--prefix", str(tools), "--ignore-scripts",
                               "--no-audit", "--no-fund", "@oven/bun-linux-x64@1"],
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0 or not binary.exists():
            pytest.skip(f"bun could not be fetched (registry unreachable?): {done.stderr[-300:]}")
    binary.chmod(0o755)
    return str(binary)


def _bun_other_platforms(lock: Path) -> set[tuple[str, str]]:
    """Packages bun.lock itself marks for another OS or CPU (bun skips them here)."""
    import platform

    from chainwatch.inventory.bun_lock import strip_jsonc

    doc = json.loads(strip_jsonc(lock.read_text()))
    here = {"os": "linux" if platform.system() == "Linux" else platform.system().lower(),
            "cpu": "x64" if platform.machine() in ("x86_64", "AMD64") else platform.machine()}
    skipped = set()
    for entry in doc["packages"].values():
        meta = entry[2] if len(entry) > 2 and isinstance(entry[2], dict) else {}
        for key, value in here.items():
            allowed = meta.get(key)
            allowed = [allowed] if isinstance(allowed, str) else allowed
            if allowed and value not in allowed and f"!{value}" not in allowed:
                name, _, version = str(entry[0]).rpartition("@")
                skipped.add((name, version))
    return skipped


def test_bun_lockfile_matches_bun_pm_ls() -> None:
    bun = _bun()
    folder = _built("bun1", [bun, "install", "--ignore-scripts", "--save-text-lockfile"],
                    "bun.lock")
    done = subprocess.run([bun, "pm", "ls", "--all"], cwd=folder,
                          capture_output=True, text=True, timeout=300, check=False)
    truth: set[tuple[str, str]] = set()
    for line in done.stdout.splitlines():
        item = line.strip().lstrip("│├└─ ").strip()
        name, _, version = item.rpartition("@")
        if name and version and not version.startswith(("workspace:", "link:")):
            truth.add((ALIASES.get(name, name), version))
    lock = _ours(folder / "bun.lock")
    ours = {(p.name, p.version) for p in lock.packages}
    # bun pm ls lists node_modules: the lockfile also holds what bun skips on this platform
    skipped = _bun_other_platforms(folder / "bun.lock")
    assert truth and ours == truth | skipped and not truth & skipped and not lock.errors
    assert _pairs(_trees(folder)) == truth  # bun's isolated .bun store


def test_yarn4_lockfile_matches_yarn_info() -> None:
    folder = _built("yarn4", ["npx", "--yes", "-p", "@yarnpkg/cli-dist@4", "yarn", "install",
                              "--mode=skip-build"], "yarn.lock",
                    env={"YARN_ENABLE_IMMUTABLE_INSTALLS": "false"})
    done = subprocess.run(["npx", "--yes", "-p", "@yarnpkg/cli-dist@4", "yarn", "info", "-A", "-R",
                           "--json"], cwd=folder, capture_output=True, text=True, timeout=300,
                          check=False)
    truth: set[tuple[str, str]] = set()
    for line in done.stdout.splitlines():
        locator = str(json.loads(line)["value"])
        if "@npm:" in locator:
            name, _, version = locator.rpartition("@npm:")
            truth.add((name, version))
    ours = {(p.name, p.version) for p in _ours(folder / "yarn.lock").packages}
    assert truth and ours == truth


#: Names with underscores and a peer suffix: pnpm 7 (lockfile 5.4) and 8 (6.0) once lost them.
UNDERSCORES: dict[str, Any] = {
    "name": "underscore-app", "version": "1.0.0", "private": True,
    "dependencies": {"@types/babel__core": "7.20.5", "string_decoder": "^1.3.0",
                     "react-dom": "18.2.0", "react": "18.2.0"},
    "workspaces": ["packages/*"],
}


@pytest.mark.parametrize("version", ["7", "8", "9"])
def test_pnpm_names_with_underscores_match_pnpm_ls(version: str) -> None:
    folder = _built(f"pnpm{version}-underscores", ["npx", "--yes", f"pnpm@{version}", "install",
                                                   "--ignore-scripts", "--reporter=silent"],
                    "pnpm-lock.yaml", UNDERSCORES)
    truth = _pnpm_truth(folder, version)
    lock = _ours(folder / "pnpm-lock.yaml")
    assert ("@types/babel__core", "7.20.5") in truth
    assert {(p.name, p.version) for p in lock.packages} == truth and not lock.errors
    assert _pairs(_trees(folder)) == truth - _pnpm_skipped(folder)


# --- installed trees: ``inventory path/to/node_modules`` against the managers' own listings ---

def _trees(path: Path) -> list[Environment]:
    found = list(walk([path]))
    assert not [e for e in found if not isinstance(e, Environment)], found
    return [e for e in found if isinstance(e, Environment) and e.kind == "node_modules"]


def _pairs(envs: list[Environment]) -> set[tuple[str, str]]:
    return {(p.name, p.version) for env in envs for p in env.packages}


@pytest.fixture(scope="module")
def npm_tree() -> Path:
    """The fixture project really installed by npm (scripts ignored), hidden lockfile and all."""
    if shutil.which("npm") is None:
        missing_part("npm not installed")
    return _built("npm-tree", ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund"],
                  "package-lock.json")


def test_npm_node_modules_matches_npm_ls(npm_tree: Path) -> None:
    truth = _npm_truth(npm_tree, lockfile=False)
    assert ("chalk", "2.4.2") in truth and ("string-width", "4.2.3") in truth
    [env] = _trees(npm_tree / "node_modules")  # the folder itself, hidden lockfile valid
    assert _pairs([env]) == truth and not env.errors
    assert all(p.integrity for p in env.packages)  # taken from npm's hidden lockfile
    semver = next(p for p in env.packages if p.name == "semver")
    assert semver.dev and not next(p for p in env.packages if p.name == "debug").dev


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def test_npm_node_modules_without_or_with_a_lying_hidden_lockfile(npm_tree: Path,
                                                                   tmp_path: Path) -> None:
    truth = _npm_truth(npm_tree, lockfile=False)
    project = _copy_tree(npm_tree, tmp_path / "p")
    hidden = project / "node_modules" / ".package-lock.json"
    doc = json.loads(hidden.read_text())
    # an edited hidden lockfile that hides debug: the disk is read instead, and says why
    doc["packages"].pop("node_modules/debug")
    hidden.write_text(json.dumps(doc))
    envs = _trees(project)  # the project folder: its node_modules and each workspace's
    assert _pairs(envs) == truth
    assert any(".package-lock.json does not match" in e for env in envs for e in env.errors)
    hidden.unlink()
    (project / "package-lock.json").unlink()
    envs = _trees(project)
    assert _pairs(envs) == truth and not [e for env in envs for e in env.errors]
    # no fixtures or nested manifests inside a package, no declared ranges as versions
    assert all(p.exact and p.version[0].isdigit() for env in envs for p in env.packages)


def _pnpm_skipped(folder: Path) -> set[tuple[str, str]]:
    """What pnpm itself recorded as not installed on this platform (``.modules.yaml``)."""
    import yaml

    modules = yaml.safe_load((folder / "node_modules" / ".modules.yaml").read_text())
    skipped = set()
    for key in modules.get("skipped") or []:  # ``/fsevents/2.3.3`` (pnpm 8), ``fsevents@2.3.3``
        item = str(key).lstrip("/")
        at = item.find("@", 1)
        name, version = (item[:at], item[at + 1:]) if at > 0 else tuple(item.rsplit("/", 1))
        skipped.add((name, version))
    return skipped


@pytest.mark.parametrize("version", ["8", "9", "10"])
def test_pnpm_node_modules_matches_pnpm_ls_exactly(version: str) -> None:
    folder = _built(f"pnpm{version}", ["npx", "--yes", f"pnpm@{version}", "install",
                                       "--ignore-scripts", "--reporter=silent"], "pnpm-lock.yaml")
    truth = _pnpm_truth(folder, version)
    installed = _pairs(_trees(folder / "node_modules"))
    assert installed == truth - _pnpm_skipped(folder)
    assert _pairs(_trees(folder)) == installed  # the project folder reads the same tree
