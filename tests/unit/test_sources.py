"""check judges where a dependency came from: a tarball on another host, git or a folder
outside the project is a remote-dependency decision, and its name is never sent to the
registry (whose release of that name is not what was installed)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from chainwatch.gate.check import Checker, Placed
from chainwatch.gate.environments import merge_projects
from chainwatch.gate.policy import load_policy
from chainwatch.intel import BuiltinKnownBad
from chainwatch.inventory.walk import walk
from chainwatch.model import Environment
from chainwatch.registry import NpmConfig, RegistryClient

REG = "https://registry.test.invalid/"


def _check(tmp_path: Path, project: Path, policy: str = "") -> tuple[list[Placed], list[str]]:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path.strip("/"))
        return httpx.Response(404, json={"error": "not found"})

    (tmp_path / "policy.toml").write_text(policy)
    client = RegistryClient(NpmConfig(registry=REG), tmp_path / "cache", backoff=0,
                            transport=httpx.MockTransport(answer))
    envs = merge_projects([e for e in walk([project]) if isinstance(e, Environment)])
    checker = Checker(load_policy(tmp_path / "policy.toml"), client, BuiltinKnownBad())
    return checker.check(envs), asked


def _by_name(placed: list[Placed]) -> dict[str, dict[str, Placed]]:
    out: dict[str, dict[str, Placed]] = {}
    for p in placed:
        out.setdefault(p.decision.name, {})[p.decision.rule] = p
    return out


def _npm_project(root: Path) -> Path:
    project = root / "app"
    project.mkdir()
    packages = {
        "": {"name": "app", "version": "1.0.0", "dependencies": {
            "left-pad": "https://example.com/left-pad-1.3.0.tgz", "mine": "git+ssh://x",
            "ms": "2.1.3", "vendored": "file:vendor/vendored-1.0.0.tgz", "outside": "file:../out",
            "chalk": "https://example.com/chalk.tgz"}},
        "node_modules/left-pad": {"version": "1.3.0",
                                  "resolved": "https://example.com/left-pad-1.3.0.tgz"},
        "node_modules/mine": {"version": "2.0.0",
                              "resolved": "git+ssh://bob:s3cret@git.corp.example/mine.git#abc"},
        "node_modules/ms": {"version": "2.1.3",
                            "resolved": "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz"},
        "node_modules/vendored": {"version": "1.0.0", "resolved": "file:vendor/vendored-1.0.0.tgz"},
        "node_modules/outside": {"resolved": "../out", "link": True},
        "../out": {"name": "outside", "version": "0.1.0"},
        "node_modules/chalk": {"version": "5.6.1", "resolved": "https://example.com/chalk.tgz"},
    }
    (project / "package-lock.json").write_text(json.dumps(
        {"name": "app", "lockfileVersion": 3, "packages": packages}))
    return project


def test_npm_lock_sources_are_judged_not_looked_up(tmp_path: Path) -> None:
    placed, asked = _check(tmp_path, _npm_project(tmp_path))
    found = _by_name(placed)
    assert found["left-pad"]["remote-dependency"].decision.action == "block"
    assert "https://example.com/left-pad-1.3.0.tgz" in found["left-pad"][
        "remote-dependency"].decision.reason
    git = found["mine"]["remote-dependency"].decision.reason
    assert "git.corp.example/mine.git" in git and "s3cret" not in git and "***" in git
    assert "file:../out" in found["outside"]["remote-dependency"].decision.reason
    # a known-bad version from a URL is still blocked by the lists
    assert set(found["chalk"]) >= {"remote-dependency", "known-bad"}
    # only the registry's own release is looked up; the in-project tarball is the project's
    assert sorted(asked) == ["ms"]
    assert "remote-dependency" not in found.get("vendored", {})
    assert "remote-dependency" not in found["ms"]


def test_remote_dependency_off_still_never_looks_them_up(tmp_path: Path) -> None:
    placed, asked = _check(tmp_path, _npm_project(tmp_path),
                           '[remote-dependency]\naction = "off"\n')
    assert not any(p.decision.rule == "remote-dependency" for p in placed)
    assert sorted(asked) == ["ms"]


def test_warn_is_opt_in(tmp_path: Path) -> None:
    placed, _ = _check(tmp_path, _npm_project(tmp_path), '[remote-dependency]\naction = "warn"\n')
    assert _by_name(placed)["left-pad"]["remote-dependency"].decision.action == "warn"


def test_pnpm_tarball_and_git_sources(tmp_path: Path) -> None:
    project = tmp_path / "app"
    project.mkdir()
    (project / "pnpm-lock.yaml").write_text("""lockfileVersion: '9.0'
importers:
  .:
    dependencies:
      left-pad:
        specifier: https://example.com/left-pad-1.3.0.tgz
        version: https://example.com/left-pad-1.3.0.tgz
      mine:
        specifier: github:me/mine
        version: https://codeload.github.com/me/mine/tar.gz/abc
      ms:
        specifier: 2.1.3
        version: 2.1.3
packages:
  left-pad@https://example.com/left-pad-1.3.0.tgz:
    resolution: {tarball: https://example.com/left-pad-1.3.0.tgz}
    version: 1.3.0
  mine@https://codeload.github.com/me/mine/tar.gz/abc:
    resolution: {tarball: https://codeload.github.com/me/mine/tar.gz/abc}
    version: 1.0.0
  gitdep@git+https://git.example/gitdep.git#abc:
    resolution: {type: git, repo: 'https://tok@git.example/gitdep.git', commit: abc}
    version: 3.0.0
  ms@2.1.3:
    resolution: {integrity: sha512-x}
snapshots:
  left-pad@https://example.com/left-pad-1.3.0.tgz: {}
  mine@https://codeload.github.com/me/mine/tar.gz/abc: {}
  gitdep@git+https://git.example/gitdep.git#abc: {}
  ms@2.1.3: {}
""")
    placed, asked = _check(tmp_path, project)
    found = _by_name(placed)
    assert {"left-pad", "mine", "gitdep"} <= {n for n, r in found.items()
                                               if "remote-dependency" in r}
    assert "tok" not in found["gitdep"]["remote-dependency"].decision.reason
    assert asked == ["ms"]


def test_yarn_classic_and_berry_sources(tmp_path: Path) -> None:
    classic = tmp_path / "classic"
    classic.mkdir()
    (classic / "package.json").write_text(json.dumps({"dependencies": {
        "left-pad": "https://example.com/left-pad-1.3.0.tgz", "ms": "2.1.3"}}))
    (classic / "yarn.lock").write_text("""# yarn lockfile v1


"left-pad@https://example.com/left-pad-1.3.0.tgz":
  version "1.3.0"
  resolved "https://example.com/left-pad-1.3.0.tgz"

ms@2.1.3:
  version "2.1.3"
  resolved "https://registry.yarnpkg.com/ms/-/ms-2.1.3.tgz#abc"
""")
    berry = tmp_path / "berry"
    berry.mkdir()
    (berry / "package.json").write_text(json.dumps({"name": "b", "dependencies": {
        "mine": "git+ssh://git@git.example/mine.git", "ms": "2.1.3"}}))
    (berry / "yarn.lock").write_text("""__metadata:
  version: 8

"b@workspace:.":
  version: 0.0.0-use.local
  resolution: "b@workspace:."
  dependencies:
    mine: "git+ssh://git@git.example/mine.git"
    ms: "npm:2.1.3"
  languageName: unknown
  linkType: soft

"mine@git+ssh://git@git.example/mine.git":
  version: 1.0.0
  resolution: "mine@git+ssh://git@git.example/mine.git#commit=abc"
  languageName: node
  linkType: hard

"ms@npm:2.1.3":
  version: 2.1.3
  resolution: "ms@npm:2.1.3"
  languageName: node
  linkType: hard
""")
    placed, asked = _check(tmp_path, tmp_path)
    remote = {(p.decision.name, p.source.rsplit("/", 2)[-2]) for p in placed
              if p.decision.rule == "remote-dependency"}
    assert remote == {("left-pad", "classic"), ("mine", "berry")}
    assert sorted(asked) == ["ms"]


def test_yarn_file_dependencies_inside_and_outside_the_project(tmp_path: Path) -> None:
    classic = tmp_path / "classic"
    classic.mkdir()
    (classic / "package.json").write_text(json.dumps({"dependencies": {
        "out": "file:../out", "vend": "file:vendor/vend-1.0.0.tgz"}}))
    (classic / "yarn.lock").write_text("""# yarn lockfile v1


"out@file:../out":
  version "1.0.0"

"vend@file:vendor/vend-1.0.0.tgz":
  version "1.0.0"
  resolved "file:vendor/vend-1.0.0.tgz#abc"
""")
    berry = tmp_path / "berry"
    berry.mkdir()
    (berry / "package.json").write_text(json.dumps({"name": "b", "workspaces": ["pk/*"]}))
    (berry / "yarn.lock").write_text("""__metadata:
  version: 8

"b@workspace:.":
  version: 0.0.0-use.local
  resolution: "b@workspace:."
  dependencies:
    vend: "file:./vendor/vend.tgz"
  languageName: unknown
  linkType: soft

"w@workspace:pk/w":
  version: 0.0.0-use.local
  resolution: "w@workspace:pk/w"
  dependencies:
    far: "file:../../../far.tgz"
  languageName: unknown
  linkType: soft

"vend@file:./vendor/vend.tgz::locator=b%40workspace%3A.":
  version: 2.0.0
  resolution: "vend@file:./vendor/vend.tgz#./vendor/vend.tgz::hash=1&locator=b%40workspace%3A."
  languageName: node
  linkType: hard

"far@file:../../../far.tgz::locator=w%40workspace%3Apk%2Fw":
  version: 3.0.0
  resolution: "far@file:../../../far.tgz#../../../far.tgz::hash=2&locator=w%40workspace%3Apk%2Fw"
  languageName: node
  linkType: hard
""")
    placed, asked = _check(tmp_path, tmp_path)
    remote = {p.decision.name for p in placed if p.decision.rule == "remote-dependency"}
    assert remote == {"out", "far"}
    assert asked == []
