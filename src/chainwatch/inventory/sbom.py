"""CycloneDX (1.4-1.6) and SPDX 2.3 JSON SBOMs: npm components by purl, with their graph."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from packageurl import PackageURL

from chainwatch.inventory.base import InventoryError, Sibling, items, json_object, mapping, text
from chainwatch.inventory.graph import Graph, Node
from chainwatch.model import Environment

NAMES = ("bom.json", "sbom.json")
SUFFIXES = (".cdx.json", ".spdx.json", ".sbom.json", ".bom.json")


def npm_purl(text: object) -> tuple[str, str] | None:
    """``pkg:npm/%40scope/name@1.2.3`` (or a raw ``@``) → (``@scope/name``, ``1.2.3``)."""
    if not isinstance(text, str) or text[:8].lower() != "pkg:npm/":  # scheme and type: any case
        return None
    try:
        purl = PackageURL.from_string("pkg:npm/" + text[8:])
    except ValueError:
        return None
    if not purl.version:
        return None
    name = f"{purl.namespace}/{purl.name}" if purl.namespace else purl.name
    return name, purl.version


class SbomExtractor:
    kind = "sbom"

    def wants(self, path: PurePosixPath) -> bool:
        return path.name in NAMES or path.name.endswith(SUFFIXES)

    def extract(self, source: str, data: bytes, sibling: Sibling) -> Environment:
        doc = json_object(data, "the SBOM")
        if doc.get("bomFormat") == "CycloneDX":
            graph = self._cyclonedx(doc)
        elif str(doc.get("spdxVersion", "")).startswith("SPDX-2"):
            graph = self._spdx(doc)
        else:
            raise InventoryError("neither CycloneDX nor SPDX 2.x JSON")
        return graph.to_environment(source, self.kind, source)

    @staticmethod
    def _cyclonedx(doc: dict[str, Any]) -> Graph:
        graph = Graph()
        scope: dict[str, str] = {}  # ref -> importer kind (excluded = dev, optional)

        def visit(components: object) -> None:
            for comp in items(components):
                if not isinstance(comp, dict):
                    continue
                parsed = npm_purl(comp.get("purl"))
                if parsed:
                    ref = str(comp.get("bom-ref") or comp.get("purl"))
                    hashes = {h.get("alg"): text(h.get("content")) for h in items(comp.get("hashes"))
                              if isinstance(h, dict)}
                    sha512 = hashes.get("SHA-512")
                    graph.add(ref, Node(parsed[0], parsed[1], None,
                                        f"sha512-{sha512}" if sha512 else None))
                    if comp.get("scope") in ("optional", "excluded"):
                        scope[ref] = "dev" if comp["scope"] == "excluded" else "optional"
                visit(comp.get("components"))

        visit(doc.get("components"))
        root = mapping(mapping(doc.get("metadata")).get("component"))
        root_ref = str(root.get("bom-ref") or "")
        label = str(root.get("name") or "(root)")
        depended: set[str] = set()
        for dep in items(doc.get("dependencies")):
            if not isinstance(dep, dict):
                continue
            parent = str(dep.get("ref"))
            for child in items(dep.get("dependsOn")):
                child = str(child)
                if child not in graph.nodes:
                    continue
                depended.add(child)
                if parent == root_ref or parent not in graph.nodes:
                    graph.importer(label, child, scope.get(child, "prod"))
                else:
                    graph.edge(parent, child, optional=scope.get(child) == "optional")
        for ref in graph.nodes:  # no graph given: every component is a root
            if ref not in depended:
                graph.importer(label, ref, scope.get(ref, "prod"))
        return graph

    @staticmethod
    def _spdx(doc: dict[str, Any]) -> Graph:
        graph = Graph()
        for pkg in items(doc.get("packages")):
            if not isinstance(pkg, dict):
                continue
            for ref in items(pkg.get("externalRefs")):
                if isinstance(ref, dict) and ref.get("referenceType") == "purl":
                    parsed = npm_purl(ref.get("referenceLocator"))
                    if parsed:
                        graph.add(str(pkg.get("SPDXID")), Node(parsed[0], parsed[1]))
                        break
        described = {str(x) for x in items(doc.get("documentDescribes"))}
        depended: set[str] = set()
        for rel in items(doc.get("relationships")):
            if not isinstance(rel, dict):
                continue
            kind = rel.get("relationshipType")
            a, b = str(rel.get("spdxElementId")), str(rel.get("relatedSpdxElement"))
            if kind == "DESCRIBES":
                described.add(b)
                continue
            if kind == "DEPENDENCY_OF":
                a, b = b, a
            elif kind not in ("DEPENDS_ON", "DEV_DEPENDENCY_OF", "OPTIONAL_DEPENDENCY_OF"):
                continue
            if kind in ("DEV_DEPENDENCY_OF", "OPTIONAL_DEPENDENCY_OF"):
                a, b = b, a
            if b not in graph.nodes:
                continue
            depended.add(b)
            flavour = {"DEV_DEPENDENCY_OF": "dev", "OPTIONAL_DEPENDENCY_OF": "optional"}.get(
                str(kind), "prod")
            if a in graph.nodes and a not in described:
                graph.edge(a, b, optional=flavour == "optional")
            else:
                graph.importer(str(doc.get("name") or "(root)"), b, flavour)
        for ref in graph.nodes:
            if ref not in depended:
                graph.importer(str(doc.get("name") or "(root)"), ref, "prod")
        return graph
