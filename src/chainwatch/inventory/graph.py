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

#: At most this many dependency paths are kept per package, all of the shortest length.
MAX_PATHS = 10
#: A path longer than PATH_HEAD + PATH_TAIL names keeps its first PATH_HEAD names (from the
#: importer), then ``CUT``, then its last PATH_TAIL names (the parent that pulled it in last).
PATH_HEAD = 12
PATH_TAIL = 12
#: Stands for the names left out of a cut path (never a valid package name).
CUT = "…"


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
        nothing: tuple[list[tuple[str, ...]], bool] = ([], False)
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
                            for path in paths.get(node_id, nothing)[0]),
                paths_cut=paths.get(node_id, nothing)[1],
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

    def _paths(self) -> dict[str, tuple[list[tuple[str, ...]], bool]]:
        """Up to MAX_PATHS dependency paths per node, and whether any were left out or cut.

        The shortest paths from an importer come first, then one shortest path through each
        other package that depends on it (every dependent is named: ``check`` reads what each
        one allows). A path longer than PATH_HEAD + PATH_TAIL names keeps both ends around
        ``CUT``. One breadth-first pass over nodes (never over paths) records each node's
        depth, its parents one level up, every dependent (up to MAX_PATHS), a saturating count
        of its shortest paths and the first PATH_HEAD names of one of them; paths are then spelt
        from those, PATH_TAIL steps up at most. So time and memory stay linear in the graph
        whatever its shape (a 20,000-long chain kept every path whole: 26 s and 1.97 GB)."""
        depth: dict[str, int] = {}
        up: dict[str, list[str]] = {}      # parents one level up (shortest paths go through)
        via: dict[str, list[str]] = {}     # every parent, up to MAX_PATHS
        more: set[str] = set()             # nodes with more parents than ``via`` holds
        roots: dict[str, list[str]] = {}   # node -> importer labels that declare it
        count: dict[str, int] = {}         # shortest paths, saturating at MAX_PATHS + 1
        head: dict[str, tuple[str, ...]] = {}
        queue: deque[str] = deque()
        for label, declared in self.importers.items():
            for child, _ in declared:
                if child not in self.nodes:
                    continue
                if child not in depth:
                    depth[child], up[child], via[child], count[child] = 1, [], [], 0
                    head[child] = (label, self.nodes[child].name)[:PATH_HEAD]
                    queue.append(child)
                labels = roots.setdefault(child, [])
                if label not in labels:
                    if len(labels) >= MAX_PATHS:
                        more.add(child)
                        continue
                    labels.append(label)
                    count[child] = min(count[child] + 1, MAX_PATHS + 1)
        while queue:
            node_id = queue.popleft()
            below = depth[node_id] + 1
            for child, _ in self.nodes[node_id].edges:
                if child not in self.nodes:
                    continue
                if child not in depth:
                    depth[child], up[child], via[child], count[child] = below, [], [], 0
                    above = head[node_id]
                    head[child] = (above if len(above) >= PATH_HEAD
                                   else (*above, self.nodes[child].name))
                    queue.append(child)
                if node_id in via[child]:
                    continue
                if len(via[child]) >= MAX_PATHS:
                    more.add(child)
                else:
                    via[child].append(node_id)
                if depth[child] == below:
                    count[child] = min(count[child] + count[node_id], MAX_PATHS + 1)
                    if len(up[child]) < MAX_PATHS:
                        up[child].append(node_id)
        found: dict[str, tuple[list[tuple[str, ...]], bool]] = {}
        for node_id in depth:
            paths, cut = self._shortest(node_id, MAX_PATHS, depth, up, roots, head)
            cut = cut or count[node_id] > MAX_PATHS or node_id in more
            name = self.nodes[node_id].name
            for parent in via[node_id]:
                if parent in up[node_id]:
                    continue
                if len(paths) >= MAX_PATHS:
                    cut = True
                    break
                through, cut_there = self._shortest(parent, 1, depth, up, roots, head)
                for path in through:
                    fitted = _fit((*path, name))
                    cut = cut or cut_there or len(fitted) <= len(path)
                    if fitted not in paths:
                        paths.append(fitted)
            found[node_id] = (paths, cut)
        return found

    def _shortest(self, node_id: str, limit: int, depth: dict[str, int],
                  up: dict[str, list[str]], roots: dict[str, list[str]],
                  head: dict[str, tuple[str, ...]]) -> tuple[list[tuple[str, ...]], bool]:
        """Up to ``limit`` shortest paths to ``node_id`` (cut when long), and whether cut."""
        level = depth[node_id]
        out: list[tuple[str, ...]] = []
        if level < PATH_HEAD + PATH_TAIL:  # importer + ``level`` names fit: whole paths
            for ids in _chains(node_id, level - 1, up, limit):
                names = tuple(self.nodes[n].name for n in ids)
                for label in roots.get(ids[0], ()):
                    if len(out) < limit:
                        out.append((label, *names))
            return out, False
        # the names near the importer, CUT, the last PATH_TAIL names
        for ids in _chains(node_id, PATH_TAIL - 1, up, limit):
            path = (*head[ids[0]], CUT, *(self.nodes[n].name for n in ids))
            if path not in out:
                out.append(path)
        return out, True


def _fit(path: tuple[str, ...]) -> tuple[str, ...]:
    """A path one name longer than allowed, cut (again) after its head."""
    if len(path) <= PATH_HEAD + PATH_TAIL + (1 if CUT in path else 0):
        return path
    return (*path[:PATH_HEAD], CUT, *path[-PATH_TAIL:])


def _chains(node_id: str, steps: int, up: dict[str, list[str]],
            limit: int) -> list[tuple[str, ...]]:
    """Up to ``limit`` chains of ``steps`` + 1 node ids ending at ``node_id``, each step from a
    node to one of its parents one level up: depth-first with one iterator per level, so the
    work is bounded by ``limit`` chains of ``steps`` steps each."""
    out: list[tuple[str, ...]] = []
    chain = [node_id]  # from node_id upwards; stack[i] iterates the parents of chain[i]
    stack = [iter(up[node_id])]
    while stack and len(out) < limit:
        if len(chain) > steps:
            out.append(tuple(reversed(chain)))
            stack.pop()
            chain.pop()
            continue
        parent = next(stack[-1], None)
        if parent is None:
            stack.pop()
            chain.pop()
            continue
        chain.append(parent)
        stack.append(iter(up[parent]))
    return out
