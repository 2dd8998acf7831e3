"""A resolved dependency graph, the shape every inventory parser produces.

Parsers add nodes (one per installed copy of a package) and edges, and name the importers
(the root project and workspaces) with their direct dependencies split into prod, dev and
optional. ``to_environment`` derives flags and dependency paths the same way for every format:
a package is dev only if no production path reaches it, optional only if every path to it goes
through an optional edge, and its paths are the shortest ones from an importer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from chainwatch.inventory.base import redact, redact_optional
from chainwatch.model import Environment, InstalledPackage

#: At most this many dependency paths are kept per package (shortest first).
MAX_PATHS = 10


@dataclass
class Node:
    name: str
    version: str
    resolved: str | None = None
    integrity: str | None = None
    #: the lockfile's own flags (npm ``dev``/``optional``/``devOptional``, pnpm ``dev:``/
    #: ``optional:``), used only for a node no importer reaches
    dev: bool | None = None
    optional: bool | None = None
    #: (child node id, optional edge?)
    edges: list[tuple[str, bool]] = field(default_factory=list)


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    #: importer label -> list of (node id, kind) with kind in prod/dev/optional/peer
    importers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: the importer that is the project itself (default: ``.``, ``(root)`` or the first one)
    root: str | None = None

    def add(self, node_id: str, node: Node) -> None:
        self.nodes.setdefault(node_id, node)

    def edge(self, parent: str, child: str, optional: bool = False) -> None:
        self.nodes[parent].edges.append((child, optional))

    def importer(self, label: str, child: str, kind: str = "prod") -> None:
        self.importers.setdefault(label, []).append((child, kind))

    def to_environment(self, env_id: str, kind: str, source: str) -> Environment:
        prod_reach = self._reach({"prod", "peer", "optional"}, through_optional=True)
        required_reach = self._reach({"prod", "dev", "peer"}, through_optional=False)
        reached = self._reach({"prod", "dev", "peer", "optional"}, through_optional=True)
        paths = self._paths()
        packages = []
        for node_id, node in self.nodes.items():
            if node_id in reached or (node.dev is None and node.optional is None):
                dev = node_id not in prod_reach and bool(self.importers)
                optional = node_id not in required_reach and bool(self.importers)
            else:  # no importer reaches it (no root, a broken graph): the lockfile's own flags
                dev, optional = bool(node.dev), bool(node.optional)
            packages.append(InstalledPackage(  # URL credentials never leave the parser
                name=redact(node.name), version=redact(node.version), dev=dev, optional=optional,
                resolved=redact_optional(node.resolved), integrity=node.integrity,
                paths=tuple(tuple(redact(step) for step in path)
                            for path in paths.get(node_id, ())),
            ))
        packages.sort(key=lambda p: (p.name, p.version))
        return Environment(env_id, kind, source, tuple(packages),
                           tuple(redact(error) for error in self.errors),
                           edges=self._edges(), importers=self._importers(), root=self._root())

    def key(self, node_id: str) -> str:
        """A node's ``name@version``, as the graph fields of an environment name it."""
        node = self.nodes[node_id]
        return redact(f"{node.name}@{node.version}")

    def _edges(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        merged: dict[str, set[str]] = {}
        for node_id, node in self.nodes.items():
            children = merged.setdefault(self.key(node_id), set())
            children.update(self.key(child) for child, _ in node.edges
                            if child in self.nodes and child != node_id)
        return tuple((key, tuple(sorted(children - {key})))
                     for key, children in sorted(merged.items()))

    def _importers(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple((redact(label), tuple(sorted({self.key(c) for c, _ in roots
                                                   if c in self.nodes})))
                     for label, roots in self.importers.items())

    def _root(self) -> str | None:
        if self.root is not None and self.root in self.importers:
            return redact(self.root)
        for label in (".", "(root)"):
            if label in self.importers:
                return label
        return redact(next(iter(self.importers))) if self.importers else None

    def _reach(self, kinds: set[str], through_optional: bool) -> set[str]:
        seen: set[str] = set()
        queue = deque(child for roots in self.importers.values() for child, k in roots
                      if k in kinds and child in self.nodes)
        seen.update(queue)
        while queue:
            for child, optional in self.nodes[queue.popleft()].edges:
                if child in self.nodes and child not in seen and (through_optional or not optional):
                    seen.add(child)
                    queue.append(child)
        return seen

    def _paths(self) -> dict[str, list[tuple[str, ...]]]:
        """Shortest paths from importers, up to MAX_PATHS per node (BFS over paths)."""
        found: dict[str, list[tuple[str, ...]]] = {}
        queue: deque[tuple[str, tuple[str, ...]]] = deque()
        for label, roots in self.importers.items():
            for child, _ in roots:
                if child in self.nodes:
                    queue.append((child, (label, self.nodes[child].name)))
        expanded: dict[str, int] = {}
        while queue:
            node_id, path = queue.popleft()
            bucket = found.setdefault(node_id, [])
            if len(bucket) >= MAX_PATHS or path in bucket:
                continue
            bucket.append(path)
            # expand each node from its first few paths only: enough for every descendant
            if expanded.get(node_id, 0) >= 2:
                continue
            expanded[node_id] = expanded.get(node_id, 0) + 1
            for child, _ in self.nodes[node_id].edges:
                if child in self.nodes and len(found.get(child, ())) < MAX_PATHS:
                    queue.append((child, (*path, self.nodes[child].name)))
        return found
