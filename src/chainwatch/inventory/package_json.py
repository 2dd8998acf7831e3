"""A package.json with no lockfile beside it: declared ranges (exact only when pinned)."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from chainwatch.inventory.base import Sibling, conflicted, json_object, manifest_deps
from chainwatch.model import Environment, InstalledPackage
from chainwatch.versions import parse

LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml",
             "bun.lock", "bun.lockb")


class PackageJsonExtractor:
    kind = "package.json"

    def wants(self, path: PurePosixPath) -> bool:
        return path.name == "package.json" and "node_modules" not in path.parts

    def extract(self, source: str, data: bytes, sibling: Sibling) -> Environment:
        beside = {name: found for name in LOCKFILES if (found := sibling(name)) is not None}
        if any(_readable(name, found) for name, found in beside.items()):
            return Environment(source, self.kind, source, (), ("skipped: a lockfile is beside it",))
        # no lockfile, or only unreadable ones (a merge conflict): the pins still say something
        manifest = json_object(data, "package.json")
        label = str(manifest.get("name") or "(root)")
        packages = tuple(sorted(
            (InstalledPackage(name=dep, version=rng.lstrip("=v").strip(), dev=kind == "dev",
                              optional=kind in ("optional", "peer"), paths=((label, dep),),
                              exact=parse(rng.lstrip("=v").strip()) is not None)
             for dep, rng, kind in manifest_deps(manifest)),
            key=lambda p: p.name))
        return Environment(source, self.kind, source, packages)


def _readable(name: str, data: bytes) -> bool:
    """Whether a lockfile beside the manifest can stand for it: not a merge conflict, and a
    JSON lockfile that is a JSON object (its own parser reports what is wrong with it)."""
    if conflicted(data):
        return False
    if name.endswith(".json"):
        try:
            return isinstance(json.loads(data), dict)
        except (ValueError, RecursionError):
            return False
    return True
