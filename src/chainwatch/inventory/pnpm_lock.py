"""pnpm-lock.yaml: lockfile 5.x, 6.0 and 9.0 (importers, packages, snapshots), multi-document."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from chainwatch.inventory import safe_yaml
from chainwatch.inventory.base import InventoryError, Sibling, mapping, text
from chainwatch.inventory.graph import Graph, Node
from chainwatch.model import Environment


def strip_peers(key: str) -> str:
    """``a@1.0.0(b@2)(c@3)`` → ``a@1.0.0``: what ``re.sub(r"\\(.*\\)$", "", key)`` gives, in
    linear time (that regex is quadratic on a key of many ``(``: 20,000 took 0.4 s, and a key
    is stripped several times)."""
    body, newline = (key[:-1], "\n") if key.endswith("\n") else (key, "")
    if not body.endswith(")"):
        return key
    start = body.find("(", body.rfind("\n") + 1)  # ``.`` does not cross a line break
    return key if start < 0 else body[:start] + newline


def _split_key(key: str) -> tuple[str, str]:
    """``/@s/n/1.0.0`` (v5), ``/@s/n@1.0.0`` (v6) or ``@s/n@1.0.0(peer@1)`` (v9) → name, version."""
    core = strip_peers(key.split("_", 1)[0] if key.startswith("/") and "_" in key else key)
    core = core.lstrip("/")
    at = core.rfind("@")
    if at > 0:
        return core[:at], core[at + 1 :]
    name, _, version = core.rpartition("/")  # v5: /name/version
    return name, version


class PnpmLockExtractor:
    kind = "pnpm"

    def wants(self, path: PurePosixPath) -> bool:
        return path.name == "pnpm-lock.yaml"

    def extract(self, source: str, data: bytes, sibling: Sibling) -> Environment:
        docs = [d for d in safe_yaml.load_all(data.decode("utf-8", errors="replace"))
                if isinstance(d, dict)]
        if not docs:
            raise InventoryError("empty pnpm lockfile")
        graph = Graph()
        for doc in docs:  # pnpm 11 writes more than one document: read them all
            self._document(doc, graph)
        if not graph.nodes and not graph.importers:
            raise InventoryError("no importers or packages in the pnpm lockfile")
        return graph.to_environment(source, self.kind, source)

    def _document(self, doc: dict[str, Any], graph: Graph) -> None:
        packages = mapping(doc.get("packages"))
        snapshots = doc.get("snapshots")
        nodes_src = snapshots if isinstance(snapshots, dict) else packages
        ids: dict[tuple[str, str], str] = {}
        for key in nodes_src:
            name, version = _split_key(str(key))
            meta = mapping(packages.get(key) or packages.get(strip_peers(str(key))))
            resolution = mapping(meta.get("resolution"))
            graph.add(str(key), Node(name, version, text(resolution.get("tarball")),
                                     text(resolution.get("integrity"))))
            ids[(name, strip_peers(version))] = str(key)
            ids.setdefault((name, version), str(key))

        def find(dep: str, ref: object) -> str | None:
            if not isinstance(ref, str | int | float) or isinstance(ref, bool):
                return None  # a version is a scalar; anything else names nothing
            ref = str(ref)
            if ref.startswith(("link:", "workspace:")):
                return None
            for candidate in (ref, f"/{ref}", f"{dep}@{ref}", f"/{dep}@{ref}", f"/{dep}/{ref}"):
                if candidate in graph.nodes:
                    return candidate
            if "@" in ref.lstrip("@"):  # alias: realname@version
                name, version = _split_key(ref)
                return ids.get((name, strip_peers(version)))
            return ids.get((dep, strip_peers(ref)))

        for key, entry in nodes_src.items():
            if not isinstance(entry, dict):
                continue
            for section, optional in (("dependencies", False), ("optionalDependencies", True)):
                for dep, ref in mapping(entry.get(section)).items():
                    child = find(str(dep), ref)
                    if child:
                        graph.edge(str(key), child, optional)
        importers = doc.get("importers")
        if not isinstance(importers, dict):  # v5/v6 single project: the root fields
            importers = {".": doc} if any(k in doc for k in ("dependencies", "devDependencies")) else {}
        for path, importer in importers.items():
            if not isinstance(importer, dict):
                continue
            for section, kind in (("dependencies", "prod"), ("devDependencies", "dev"),
                                  ("optionalDependencies", "optional")):
                for dep, ref in mapping(importer.get(section)).items():
                    wanted = ref.get("version") if isinstance(ref, dict) else ref
                    child = find(str(dep), wanted)
                    if child:
                        graph.importer(str(path), child, kind)
                    elif not isinstance(wanted, str):
                        graph.errors.append(f"{path}: {dep} has no readable version")
                    elif not wanted.startswith(("link:", "workspace:")):
                        graph.errors.append(f"{path}: {dep}@{wanted} is not in the lockfile")
