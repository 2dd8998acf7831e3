"""yarn.lock of yarn berry (2+; ``__metadata.version`` 4-10): YAML keyed by descriptors."""

from __future__ import annotations

import json
import posixpath
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote

from chainwatch.inventory import base, safe_yaml
from chainwatch.inventory.base import InventoryError, Sibling, manifest_deps, mapping
from chainwatch.inventory.graph import Graph, Node
from chainwatch.inventory.yarn_classic import YarnClassicExtractor
from chainwatch.model import Environment

SKIP_PROTOCOLS = ("@workspace:", "@link:", "@portal:", "@exec:")


def _locator_name(locator: str) -> str:
    at = locator.find("@", 1)
    return locator[:at] if at > 0 else locator


def _source(locator: str) -> str | None:
    """Where a locator's package came from when that is not the registry (``x@https://…``,
    ``x@git+ssh://…#commit=…``, ``x@github:…``; ``x@file:../x.tgz::locator=app%40workspace%3A.``
    as ``file:`` relative to the lockfile's folder): the reference, else None."""
    reference = locator[len(_locator_name(locator)) + 1:]
    if reference.startswith("file:"):
        path, _, params = reference[5:].partition("::")
        workspace = "."
        for param in params.split("&"):
            key, _, value = param.partition("=")
            if key == "locator" and "@workspace:" in unquote(value):
                workspace = unquote(value).split("@workspace:", 1)[1] or "."
        path = path.split("#", 1)[0]  # the resolution repeats the path after ``#``
        return f"file:{posixpath.normpath(posixpath.join(workspace, path))}"
    return None if not reference or reference.startswith("npm:") else reference


def _npm_locator(resolution: str) -> str | None:
    """The npm locator inside a patch locator (``x@patch:x@npm%3A1.0.0#…`` → ``x@npm:1.0.0``)."""
    if "@patch:" not in resolution:
        return None
    inner = resolution.split("@patch:", 1)[1].split("#", 1)[0]
    return inner.replace("%3A", ":").replace("%40", "@")


class YarnBerryExtractor:
    kind = "yarn"

    def wants(self, path: PurePosixPath) -> bool:
        return path.name == "yarn.lock"

    def extract(self, source: str, data: bytes, sibling: Sibling) -> Environment:
        text = data.decode("utf-8", errors="replace")
        if "__metadata:" not in text:
            return YarnClassicExtractor().extract(source, data, sibling)
        doc = safe_yaml.load(text)
        if not isinstance(doc, dict):
            raise InventoryError("not a yarn berry lockfile")
        graph = Graph()
        descriptors: dict[str, str] = {}  # "name@range" -> resolution locator
        entries: dict[str, dict[str, Any]] = {}
        for key, entry in doc.items():
            if key == "__metadata" or not isinstance(entry, dict):
                continue
            resolution = str(entry.get("resolution", ""))
            entries[resolution] = entry
            for descriptor in str(key).split(", "):
                descriptors[descriptor.strip()] = resolution
        for resolution, entry in entries.items():
            if any(p in resolution for p in SKIP_PROTOCOLS) or "@patch:" in resolution:
                continue
            graph.add(resolution, Node(_locator_name(resolution), str(entry.get("version", "")),
                                       _source(resolution), base.text(entry.get("checksum"))))

        only_version: dict[str, list[str]] = {}
        for locator, node in graph.nodes.items():
            only_version.setdefault(node.name, []).append(locator)

        def target(dep: str, rng: str) -> str | None:
            locator = descriptors.get(f"{dep}@{rng}") or descriptors.get(f"{dep}@npm:{rng}")
            if locator and "@patch:" in locator:
                locator = _npm_locator(locator)
            if locator in graph.nodes:
                return locator
            # catalog: and similar ranges resolve outside the lockfile: by name when unambiguous
            same = only_version.get(dep, [])
            return same[0] if len(same) == 1 else None

        for resolution, entry in entries.items():
            meta = mapping(entry.get("dependenciesMeta"))
            deps = dict(mapping(entry.get("dependencies")))
            optional = set(mapping(entry.get("optionalDependencies")))
            deps.update(mapping(entry.get("optionalDependencies")))
            for dep, rng in deps.items():
                child = target(str(dep), str(rng))
                if child is None:
                    continue
                is_optional = dep in optional or bool(mapping(meta.get(dep)).get("optional"))
                if "@workspace:" in resolution:
                    graph.importer(_locator_name(resolution), child,
                                   "optional" if is_optional else "prod")
                elif resolution in graph.nodes:
                    graph.edge(resolution, child, optional=is_optional)
        self._dev_from_manifest(graph, sibling, target)
        return graph.to_environment(source, self.kind, source)

    @staticmethod
    def _dev_from_manifest(graph: Graph, sibling: Sibling, target: Any) -> None:
        """Berry does not mark dev dependencies: the root package.json says which are."""
        raw = sibling("package.json")
        if not raw:
            return
        try:
            manifest = json.loads(raw)
        except (ValueError, RecursionError):
            return
        if not isinstance(manifest, dict):
            return
        dev = {(d, r) for d, r, k in manifest_deps(manifest) if k == "dev"}
        root = str(manifest.get("name") or "")
        for label, roots in graph.importers.items():
            if label != root:
                continue
            graph.importers[label] = [
                (child, "dev" if any(target(d, r) == child for d, r in dev) else kind)
                for child, kind in roots]
