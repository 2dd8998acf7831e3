"""Workspace members are the project's own packages: never looked up on the registry, and their
package.json files are part of the project's environment, not environments of their own."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from chainwatch.gate.check import Checker
from chainwatch.gate.environments import merge_projects
from chainwatch.gate.policy import Policy
from chainwatch.intel import BuiltinKnownBad
from chainwatch.inventory.walk import walk
from chainwatch.model import Environment
from chainwatch.registry import NpmConfig, RegistryClient

REG = "https://registry.test.invalid/"


def _write(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))


def _members(root: Path) -> None:
    _write(root / "packages/a/package.json", {"name": "a", "version": "1.0.0",
                                              "dependencies": {"ms": "2.1.3"}})
    _write(root / "packages/b/package.json", {"name": "b", "version": "1.0.0",
                                              "dependencies": {"a": "1.0.0", "debug": "4.4.3"}})


def _envs(root: Path) -> list[Environment]:
    return [e for e in walk([root]) if isinstance(e, Environment)]


def _asked(tmp_path: Path, root: Path) -> tuple[set[str], set[str]]:
    asked: set[str] = set()

    def answer(request: httpx.Request) -> httpx.Response:
        asked.add(request.url.path.strip("/"))
        return httpx.Response(404, json={"error": "not found"})

    client = RegistryClient(NpmConfig(registry=REG), tmp_path / "cache", backoff=0,
                            transport=httpx.MockTransport(answer))
    placed = Checker(Policy(), client, BuiltinKnownBad()).check(merge_projects(_envs(root)))
    return asked, {p.decision.name for p in placed}


def test_npm_workspace_with_lockfile(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _write(root / "package.json", {"name": "ws-root", "private": True,
                                   "workspaces": ["packages/*"]})
    _members(root)
    _write(root / "package-lock.json", {"name": "ws-root", "lockfileVersion": 3, "packages": {
        "": {"name": "ws-root", "workspaces": ["packages/*"]},
        "node_modules/a": {"resolved": "packages/a", "link": True},
        "node_modules/b": {"resolved": "packages/b", "link": True},
        "node_modules/debug": {"version": "4.4.3", "dependencies": {"ms": "^2.1.3"}},
        "node_modules/ms": {"version": "2.1.3"},
        "packages/a": {"name": "a", "version": "1.0.0", "dependencies": {"ms": "2.1.3"}},
        "packages/b": {"name": "b", "version": "1.0.0",
                       "dependencies": {"a": "1.0.0", "debug": "4.4.3"}}}})
    envs = _envs(root)
    assert [Path(e.source).relative_to(root).as_posix() for e in envs] == ["package-lock.json"]
    asked, judged = _asked(tmp_path, root)
    assert asked == {"debug", "ms"} and "a" not in judged


@pytest.mark.parametrize("layout", ["npm", "yarn", "pnpm"])
def test_workspace_without_lockfile_is_one_environment(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "ws"
    manifest: dict[str, object] = {"name": "ws-root", "dependencies": {"b": "1.0.0"}}
    if layout == "npm":
        manifest["workspaces"] = ["packages/*"]
    elif layout == "yarn":
        manifest["workspaces"] = {"packages": ["packages/*"]}
    else:
        _write(root / "pnpm-workspace.yaml", "packages:\n  - 'packages/*'\n")
    _write(root / "package.json", manifest)
    _members(root)
    envs = _envs(root)
    assert [Path(e.source).relative_to(root).as_posix() for e in envs] == ["package.json"]
    assert {(p.name, p.version) for p in envs[0].packages} == {("ms", "2.1.3"),
                                                               ("debug", "4.4.3")}
    asked, judged = _asked(tmp_path, root)
    assert asked == {"debug", "ms"} and not judged & {"a", "b"}


def test_a_folder_the_workspace_does_not_name_is_its_own_project(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _write(root / "package.json", {"name": "ws-root", "workspaces": ["packages/a"]})
    _members(root)
    sources = sorted(Path(e.source).relative_to(root).as_posix() for e in _envs(root))
    # b is not a member: its pin on "a" is a registry package like any other
    assert sources == ["package.json", "packages/b/package.json"]


def test_pnpm_globs_recursive_and_negated(tmp_path: Path) -> None:
    from chainwatch.inventory.workspaces import members

    root = tmp_path / "ws"
    _write(root / "pnpm-workspace.yaml",
           "packages:\n  - 'packages/**'\n  - '!packages/fixtures/**'\n")
    _write(root / "packages/x/y/package.json", {"name": "y"})
    _write(root / "packages/fixtures/f/package.json", {"name": "f"})
    _write(root / "packages/node_modules/n/package.json", {"name": "n"})
    found = members(root)
    assert found is not None and found.names == {"y"}
