"""package-lock.json (v1, v2, v3), npm-shrinkwrap.json and node_modules/.package-lock.json."""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath
from typing import Any

from chainwatch.inventory.base import InventoryError, Sibling, json_object, manifest_deps, mapping, text
from chainwatch.inventory.graph import Graph, Node
from chainwatch.model import Environment

NAMES = ("package-lock.json", "npm-shrinkwrap.json", ".package-lock.json")
#: The kind of a lockfile the package manager does not read (reported, never inventoried).
IGNORED = "ignored"


def _name_at(location: str) -> str:
    return location.rsplit("node_modules/", 1)[-1]


def _leaves(target: str) -> bool:
    """Whether a link's target folder (relative to the lockfile) is outside the project."""
    normal = posixpath.normpath(target.replace("\\", "/") or ".")
    return normal.startswith(("/", "../")) or normal == ".." or normal[1:2] == ":"


def resolve(location: str, dep: str, entries: dict[str, Any]) -> str | None:
    """Node's module resolution: the nearest ``node_modules/dep`` at or above ``location``."""
    base = location
    while True:
        candidate = f"{base}/node_modules/{dep}" if base else f"node_modules/{dep}"
        if candidate in entries:
            return candidate
        if not base:
            return None
        cut = base.rfind("/node_modules/")
        if cut >= 0:
            base = base[:cut]
        elif base.startswith("node_modules/"):
            base = ""
        else:  # a workspace folder: its own node_modules, then the root's
            base = ""


def packages_graph(entries: dict[str, Any], hidden: bool = False) -> Graph:
    """The graph of a v2/v3 ``packages`` map (``hidden``: npm's ``node_modules/.package-lock.json``,
    which has no root entry and may leave out what npm did not install)."""
    graph = Graph()
    for location, entry in entries.items():
        if (isinstance(entry, dict) and entry.get("link") and location.startswith("node_modules/")
                and isinstance(target := entry.get("resolved"), str) and _leaves(target)):
            # a link to a folder outside the project (``file:../x``): installed, from there
            folder = entries.get(target)
            folder = folder if isinstance(folder, dict) else {}
            graph.add(location, Node(
                name=str(folder.get("name") or _name_at(location)),
                version=str(folder.get("version") or f"file:{target}"),
                resolved=f"file:{target}", integrity=None,
                dev=entry.get("dev") is True, optional=entry.get("optional") is True))
            continue
        if not isinstance(entry, dict) or "node_modules/" not in f"{location}/" or entry.get(
                "link") or location == "":
            continue
        if not location.startswith("node_modules/") and "/node_modules/" not in location:
            continue
        graph.add(location, Node(
            name=str(entry.get("name") or _name_at(location)),
            version=str(entry.get("version", "")),
            resolved=text(entry.get("resolved")), integrity=text(entry.get("integrity")),
            dev=entry.get("dev") is True, optional=entry.get("optional") is True or entry.get(
                "devOptional") is True))
    importers = [loc for loc, e in entries.items() if isinstance(e, dict) and (
        loc == "" or ("node_modules/" not in f"{loc}/" and not e.get("link")))]
    for location, entry in entries.items():
        if location not in graph.nodes and location not in importers:
            continue
        deps = manifest_deps(entry)
        for dep, _, kind in deps:
            target = resolve(location, dep, entries)
            if target is None or target not in graph.nodes:
                linked = entries.get(target or "", {})
                if isinstance(linked, dict) and linked.get("link"):
                    continue  # a workspace: an importer of its own
                if kind not in ("optional", "peer") and not hidden:
                    graph.errors.append(f"{location or '(root)'}: {dep} is not in the lockfile")
                continue
            if location in graph.nodes:
                if kind != "dev":
                    graph.edge(location, target, optional=kind in ("optional", "peer"))
            else:
                label = str(entry.get("name") or location or "(root)")
                graph.importer(label, target, kind)
                if location == "":
                    graph.root = label
    return graph


class NpmLockExtractor:
    kind = "package-lock"

    def wants(self, path: PurePosixPath) -> bool:
        return path.name in NAMES and (path.name != ".package-lock.json"
                                       or path.parent.name == "node_modules")

    def extract(self, source: str, data: bytes, sibling: Sibling) -> Environment:
        if PurePosixPath(source).name == "package-lock.json" and sibling(
                "npm-shrinkwrap.json") is not None:
            # npm installs from the shrinkwrap alone when both exist: so do we
            return Environment(source, IGNORED, source, (), (
                "ignored: npm-shrinkwrap.json beside it is what npm installs",))
        doc = json_object(data, "package-lock")
        if isinstance(doc.get("packages"), dict):
            graph = packages_graph(doc["packages"], hidden=source.endswith(".package-lock.json"))
        elif isinstance(doc.get("dependencies"), dict):
            graph = self._v1(doc["dependencies"])
        else:
            raise InventoryError(_no_packages(doc.get("lockfileVersion")))
        kind = "node_modules" if source.endswith(".package-lock.json") else self.kind
        return graph.to_environment(source, kind, source)

    def _v1(self, deps: dict[str, Any]) -> Graph:
        graph = Graph()
        flat: dict[str, Any] = {}

        def visit(tree: dict[str, Any], prefix: str) -> None:
            for name, entry in tree.items():
                if not isinstance(entry, dict):
                    continue
                location = f"{prefix}node_modules/{name}"
                flat[location] = entry
                version = str(entry.get("version", ""))
                real = name
                if version.startswith("npm:"):  # alias: npm:real@version
                    real, _, version = version[4:].rpartition("@")
                graph.add(location, Node(real, version, text(entry.get("resolved")),
                                         text(entry.get("integrity")), dev=entry.get("dev") is True,
                                         optional=entry.get("optional") is True))
                if isinstance(entry.get("dependencies"), dict):
                    visit(entry["dependencies"], f"{location}/")

        visit(deps, "")
        required: set[str] = set()
        for location, entry in flat.items():
            for dep in mapping(entry.get("requires")):
                target = resolve(location, str(dep), flat)
                if target:
                    graph.edge(location, target, optional=bool(flat[target].get("optional")))
                    required.add(target)
        for location, entry in flat.items():
            if location.count("node_modules/") == 1 and location not in required:
                kind = "dev" if entry.get("dev") else (
                    "optional" if entry.get("optional") else "prod")
                graph.importer("(root)", location, kind)
        return graph


def _no_packages(version: object) -> str:
    """Why a package-lock lists nothing; names its lockfileVersion only when the file gives
    one (a number: the author's text is never echoed)."""
    if version is None:
        return "no lockfileVersion, 'packages' or 'dependencies' (not an npm lockfile)"
    if isinstance(version, int) and not isinstance(version, bool) and 0 <= version < 1000:
        return f"no 'packages' or 'dependencies' (lockfileVersion {version})"
    return "no 'packages' or 'dependencies' (and lockfileVersion is not a number)"
