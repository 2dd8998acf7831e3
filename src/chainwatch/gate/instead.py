""""Use instead": a replacement the dependents of a blocked version actually accept.

A version is wanted by its parents through ranges (``express`` asks for ``encodeurl@^2``);
suggesting 3.0.0 there would either not install or silently break ``express``. The ranges come
from the registry's manifest of each parent version (the packument the gate already read) and,
for direct dependencies, from the project's own package.json beside the lockfile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainwatch.errors import ChainwatchError
from chainwatch.manifest import parse_manifest
from chainwatch.model import Environment, InstalledPackage

DEP_FIELDS = ("dependencies", "optionalDependencies", "peerDependencies", "devDependencies")
MAX_PARENTS = 20


@dataclass(frozen=True)
class Wanted:
    """One dependent and the range it asks for (``range`` None: it could not be read)."""

    parent: str
    range: str | None


def _range_in(doc: dict[str, Any] | None, name: str) -> str | None:
    if not isinstance(doc, dict):
        return None
    for key in DEP_FIELDS:
        deps = doc.get(key)
        if isinstance(deps, dict) and isinstance(deps.get(name), str):
            return str(deps[name])
    return None


def _root_range(env: Environment, name: str) -> str | None:
    if env.kind in ("node_modules", "package.json", "sbom") or env.kind.startswith("image"):
        return None
    manifest = Path(env.source).parent / "package.json"
    try:
        parsed = parse_manifest(manifest.read_bytes(), str(manifest))
    except (OSError, ChainwatchError):
        return None
    return _range_in(dict(parsed.raw), name)


def wanted_by(env: Environment, package: InstalledPackage,
              packument: Callable[[str], dict[str, Any]]) -> list[Wanted]:
    """What each dependent of ``package`` in ``env`` allows (up to MAX_PARENTS of them)."""
    versions: dict[str, list[str]] = {}
    for other in env.packages:
        versions.setdefault(other.name, []).append(other.version)
    out: dict[str, Wanted] = {}
    for path in package.paths:
        if len(out) >= MAX_PARENTS:
            break
        if len(path) < 2:
            continue
        parent = path[-2]
        if len(path) == 2:  # a direct dependency: the project's own manifest
            out.setdefault(f"{parent} (package.json)",
                           Wanted(f"{parent} (package.json)", _root_range(env, package.name)))
            continue
        for pv in versions.get(parent, [])[:3]:
            key = f"{parent}@{pv}"
            if key in out:
                continue
            try:
                doc = packument(parent)
            except Exception:
                out[key] = Wanted(key, None)
                continue
            found = _range_in((doc.get("versions") or {}).get(pv), package.name)
            # a copy of the parent whose range does not take the installed version depends on
            # another copy of the package (path-scurry@1 wants lru-cache ^10 while
            # path-scurry@2 pulled in lru-cache@11): it is not this copy's dependent
            if found is not None and satisfies_all(package.version, [Wanted(key, found)]):
                out[key] = Wanted(key, found)
    return list(out.values())


def satisfies_all(version: str, wanted: list[Wanted]) -> bool:
    import nodesemver  # only when a blocked version's dependents are asked

    for w in wanted:
        if w.range is None:
            continue
        try:
            valid = nodesemver.valid_range(w.range, False) is not None
            if valid and not nodesemver.satisfies(version, w.range, False):
                return False
        except Exception:  # a range nodesemver cannot read (a tag, a URL): not a constraint
            continue
    return True
