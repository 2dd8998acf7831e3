"""A package.json with no lockfile beside it: declared ranges (exact only when pinned)."""

from __future__ import annotations

from pathlib import PurePosixPath

from chainwatch.inventory.base import Sibling, json_object, manifest_deps
from chainwatch.model import Environment, InstalledPackage
from chainwatch.versions import parse

LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml",
             "bun.lock", "bun.lockb")


class PackageJsonExtractor:
    kind = "package.json"

    def wants(self, path: PurePosixPath) -> bool:
        return path.name == "package.json" and "node_modules" not in path.parts

    def extract(self, source: str, data: bytes, sibling: Sibling) -> Environment:
        if any(sibling(name) is not None for name in LOCKFILES):
            return Environment(source, self.kind, source, (), ("skipped: a lockfile is beside it",))
        manifest = json_object(data, "package.json")
        label = str(manifest.get("name") or "(root)")
        packages = tuple(sorted(
            (InstalledPackage(name=dep, version=rng.lstrip("=v").strip(), dev=kind == "dev",
                              optional=kind in ("optional", "peer"), paths=((label, dep),),
                              exact=parse(rng.lstrip("=v").strip()) is not None)
             for dep, rng, kind in manifest_deps(manifest)),
            key=lambda p: p.name))
        return Environment(source, self.kind, source, packages)
