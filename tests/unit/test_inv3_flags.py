"""dev/optional when the dependency graph reaches nothing: the lockfile's own flags (issue 12 A).

Before: a lockfile with no root importer (npm's hidden lockfile, a truncated or hand-made one)
reported every package as production and required; a package no importer reached was called
dev *and* optional whatever the lockfile said. Now a reached package is judged by the graph
(the flags are ignored: the graph is the truth), an unreached one by npm's ``dev``,
``optional``, ``devOptional`` or pnpm's ``dev:``/``optional:``.
"""

from __future__ import annotations

import json

import pytest

from chainwatch.inventory.npm_lock import NpmLockExtractor
from chainwatch.inventory.pnpm_lock import PnpmLockExtractor
from chainwatch.model import Environment


def _none(_: str) -> None:
    return None


def _flags(env: Environment) -> dict[str, tuple[bool, bool]]:
    return {p.name: (p.dev, p.optional) for p in env.packages}


NPM_PACKAGES: dict[str, dict[str, object]] = {
    "node_modules/prod": {"version": "1.0.0"},
    "node_modules/tool": {"version": "1.0.0", "dev": True},
    "node_modules/fse": {"version": "2.3.3", "optional": True},
    "node_modules/both": {"version": "1.0.0", "devOptional": True},
}


def _npm(packages: dict[str, dict[str, object]], root: dict[str, object] | None) -> Environment:
    entries = dict(packages)
    if root is not None:
        entries = {"": root, **entries}
    data = json.dumps({"lockfileVersion": 3, "packages": entries}).encode()
    return NpmLockExtractor().extract("package-lock.json", data, _none)


def test_npm_without_a_root_takes_the_lockfile_flags() -> None:
    assert _flags(_npm(NPM_PACKAGES, None)) == {
        "prod": (False, False), "tool": (True, False), "fse": (False, True),
        "both": (False, True)}


def test_npm_graph_wins_over_flags_when_it_reaches_the_package() -> None:
    # the flags lie (tool says dev), the graph says production: the graph is the truth
    root = {"dependencies": {"tool": "^1", "prod": "^1"}, "devDependencies": {"fse": "^2"},
            "optionalDependencies": {"both": "^1"}}
    assert _flags(_npm(NPM_PACKAGES, root)) == {
        "prod": (False, False), "tool": (False, False), "fse": (True, False),
        "both": (False, True)}


def test_npm_broken_graph_unreached_packages_take_their_flags() -> None:
    # the root reaches prod only; the rest is unreachable (a truncated lockfile)
    assert _flags(_npm(NPM_PACKAGES, {"dependencies": {"prod": "^1"}})) == {
        "prod": (False, False), "tool": (True, False), "fse": (False, True),
        "both": (False, True)}


PNPM6 = """lockfileVersion: '6.0'
packages:
  /prod@1.0.0:
    resolution: {integrity: sha512-AAAA}
    dev: false
  /tool@1.0.0:
    resolution: {integrity: sha512-BBBB}
    dev: true
  /fse@2.3.3:
    resolution: {integrity: sha512-CCCC}
    dev: false
    optional: true
"""


@pytest.mark.parametrize("importers", ["", "importers:\n  .: {}\n"])
def test_pnpm_without_importers_takes_dev_and_optional_flags(importers: str) -> None:
    env = PnpmLockExtractor().extract("pnpm-lock.yaml", (PNPM6 + importers).encode(), _none)
    assert _flags(env) == {"prod": (False, False), "tool": (True, False), "fse": (False, True)}


def test_pnpm_graph_wins_when_importers_reach_the_package() -> None:
    doc = PNPM6 + """importers:
  .:
    dependencies:
      tool: {specifier: ^1, version: 1.0.0}
    devDependencies:
      prod: {specifier: ^1, version: 1.0.0}
"""
    env = PnpmLockExtractor().extract("pnpm-lock.yaml", doc.encode(), _none)
    assert _flags(env) == {"prod": (True, False), "tool": (False, False), "fse": (False, True)}
