"""yarn.lock of yarn classic (v1): its own indented format, one block per resolved version."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

from chainwatch.inventory.base import (
    InventoryError,
    Sibling,
    manifest_deps,
    split_spec,
    valid_name,
)
from chainwatch.inventory.graph import Graph, Node
from chainwatch.model import Environment

#: Indent, a key (quoted or not), the spaces after it: nothing here can backtrack.
_KEY = re.compile(r'\s+("?)([^"\s]+)\1\s+')


def keyval(line: str) -> tuple[str, str] | None:
    """``  key "value"`` → (key, value), as ``^\\s+("?)([^"\\s]+)\\1\\s+"?([^"]*)"?\\s*$``
    read it, in linear time: that regex backtracked polynomially (a 2,000-space line took
    15 s, 4,000 spaces 95 s), so a few KB of yarn.lock could stall the run."""
    m = _KEY.match(line)
    if not m:
        return None
    rest = line[m.end():]
    start = 1 if rest.startswith('"') else 0
    end = rest.find('"', start)
    if end < 0:
        return m.group(2), rest[start:]
    if rest[end + 1 :].strip():
        return None
    return m.group(2), rest[start:end]


def _unquote(text: str) -> str:
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def parse_blocks(text: str) -> list[tuple[list[str], dict[str, str], dict[str, dict[str, str]]]]:
    """(specifiers, fields, {section: {dep: range}}) for each block of a v1 lockfile."""
    if "<<<<<<<" in text or ">>>>>>>" in text:
        raise InventoryError("merge-conflict markers in the lockfile")
    blocks: list[tuple[list[str], dict[str, str], dict[str, dict[str, str]]]] = []
    section: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            if not line.rstrip().endswith(":"):
                raise InventoryError(f"line {number}: expected a package header")
            specs = [_unquote(s) for s in line.rstrip()[:-1].split(",")]
            blocks.append((specs, {}, {}))
            section = None
            continue
        if not blocks:
            raise InventoryError(f"line {number}: field outside a package block")
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.endswith(":") and indent == 2:
            section = stripped[:-1]
            blocks[-1][2].setdefault(section, {})
            continue
        pair = keyval(line)
        if pair is None:
            raise InventoryError(f"line {number}: cannot read {stripped[:60]!r}")
        if indent >= 4 and section:
            blocks[-1][2][section][pair[0]] = pair[1]
        else:
            section = None
            blocks[-1][1][pair[0]] = pair[1]
    return blocks


def real_name(spec: str) -> tuple[str, str]:
    """``alias@npm:real@range`` → (``real``, ``range``); plain specs unchanged."""
    at = spec.find("@", 1)
    if at > 0 and spec[at + 1 :].startswith("npm:"):
        return split_spec(spec[at + 5 :])
    return split_spec(spec)


class YarnClassicExtractor:
    kind = "yarn"

    def wants(self, path: PurePosixPath) -> bool:
        return path.name == "yarn.lock"

    def extract(self, source: str, data: bytes, sibling: Sibling) -> Environment:
        text = data.decode("utf-8", errors="replace")
        if "__metadata:" in text:
            raise InventoryError("a yarn berry lockfile (handled by the berry parser)")
        graph = Graph()
        by_spec: dict[str, str] = {}
        blocks = parse_blocks(text)
        for specs, fields, _ in blocks:
            if "version" not in fields:
                continue
            name = real_name(specs[0])[0]
            if not valid_name(name) or not fields["version"]:
                graph.errors.append(f"{specs[0][:120]!r}: cannot tell the package's name and "
                                    "version (entry skipped)")
                continue
            node_id = f"{name}@{fields['version']}"
            local = next((r for r in (real_name(spec)[1] for spec in specs)
                          if r.startswith(("file:", "link:"))), None)
            graph.add(node_id, Node(name, fields["version"], fields.get("resolved") or local,
                                    fields.get("integrity")))
            for spec in specs:
                by_spec[spec] = node_id
        depended: set[str] = set()
        for specs, fields, sections in blocks:
            if "version" not in fields:
                continue
            parent = by_spec.get(specs[0])
            if parent is None:
                continue
            for section, deps in sections.items():
                for dep, rng in deps.items():
                    child = by_spec.get(f"{dep}@{rng}")
                    if child:
                        graph.edge(parent, child, optional=section == "optionalDependencies")
                        depended.add(child)
        _importers(graph, by_spec, depended, sibling)
        return graph.to_environment(source, self.kind, source)


def _importers(graph: Graph, by_spec: dict[str, str], depended: set[str],
               sibling: Sibling) -> None:
    raw = sibling("package.json")
    manifest = {}
    if raw:
        try:
            manifest = json.loads(raw)
        except (ValueError, RecursionError):
            graph.errors.append("package.json next to the lockfile is not valid JSON")
    label = str(manifest.get("name") or "(root)") if isinstance(manifest, dict) else "(root)"
    declared = manifest_deps(manifest) if isinstance(manifest, dict) else []
    for dep, rng, kind in declared:
        child = by_spec.get(f"{dep}@{rng}")
        if child:
            graph.importer(label, child, kind)
    if not declared:  # no manifest: whatever nothing else depends on is a root
        for node_id in graph.nodes:
            if node_id not in depended:
                graph.importer("(root)", node_id, "prod")
