"""Dependency paths cannot be made to blow up (issue 11, the dependency-path bomb).

Before: paths were found by a breadth-first search over whole paths, and every node kept up to
ten of them whole. A yarn.lock whose packages form one 20,000-long chain held 200 million path
entries: 37 s and 3.2 GB to build the environment, and ``inventory --format json`` died of
MemoryError under a 4 GB limit (``python bench/inventory_bombs.py --only chain``). Now one
breadth-first pass over nodes finds the shortest paths; a package keeps at most MAX_PATHS of them
(plus one through each other dependent), each at most PATH_HEAD + PATH_TAIL names long around
``…``, and ``paths_cut`` says when anything was left out.
"""

from __future__ import annotations

import json
import tracemalloc

from chainwatch.inventory.graph import CUT, MAX_PATHS, PATH_HEAD, PATH_TAIL, Graph, Node
from chainwatch.inventory.yarn_classic import YarnClassicExtractor
from chainwatch.model import Environment, InstalledPackage
from chainwatch.output.inventory import inventory_json


def _chain(length: int) -> Graph:
    graph = Graph()
    for i in range(length):
        graph.add(f"p{i}", Node(f"p{i}", "1.0.0"))
        if i:
            graph.edge(f"p{i - 1}", f"p{i}")
    graph.importer("app", "p0")
    return graph


def _pkg(env: Environment, name: str) -> InstalledPackage:
    return next(p for p in env.packages if p.name == name)


def test_a_long_chain_keeps_both_ends_and_says_it_was_cut() -> None:
    tracemalloc.start()
    env = _chain(5_000).to_environment("x", "yarn", "yarn.lock")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # whole paths took 5,000 x 2,500 names (over 100 MB of tuples); now a few per package
    assert peak < 40 * 1024 * 1024, peak
    last = _pkg(env, "p4999")
    assert last.paths_cut
    assert last.paths == (("app", *(f"p{i}" for i in range(PATH_HEAD - 1)), CUT,
                           *(f"p{i}" for i in range(5_000 - PATH_TAIL, 5_000))),)
    assert all(len(path) <= PATH_HEAD + PATH_TAIL + 1 for p in env.packages for path in p.paths)


def test_paths_up_to_the_limit_are_whole() -> None:
    longest = PATH_HEAD + PATH_TAIL  # the importer and this many names minus one
    env = _chain(longest).to_environment("x", "yarn", "yarn.lock")
    deepest = _pkg(env, f"p{longest - 2}")
    assert deepest.paths == (("app", *(f"p{i}" for i in range(longest - 1))),)
    assert not deepest.paths_cut
    over = _pkg(env, f"p{longest - 1}")
    assert over.paths_cut and CUT in over.paths[0]


def test_many_shortest_paths_are_capped_and_each_is_real() -> None:
    # 16 layers of two packages, each depending on both of the next layer: 2**16 paths
    graph = Graph()
    layers = 16
    for layer in range(layers):
        for side in "ab":
            graph.add(f"{side}{layer}", Node(f"{side}{layer}", "1.0.0"))
    for layer in range(layers - 1):
        for parent in "ab":
            for child in "ab":
                graph.edge(f"{parent}{layer}", f"{child}{layer + 1}")
    graph.importer("app", "a0")
    graph.importer("app", "b0")
    env = graph.to_environment("x", "npm", "package-lock.json")
    bottom = _pkg(env, f"a{layers - 1}")
    assert len(bottom.paths) == MAX_PATHS and bottom.paths_cut
    assert len(set(bottom.paths)) == MAX_PATHS
    edges = {(graph.nodes[p].name, graph.nodes[c].name)
             for p, node in graph.nodes.items() for c, _ in node.edges}
    for path in bottom.paths:
        assert path[0] == "app" and path[-1] == f"a{layers - 1}" and len(path) == layers + 1
        assert all((path[i], path[i + 1]) in edges for i in range(1, len(path) - 1))
    top = _pkg(env, "a1")  # two paths only: nothing left out
    assert set(top.paths) == {("app", "a0", "a1"), ("app", "b0", "a1")} and not top.paths_cut


def test_every_dependent_is_named_not_only_the_shortest_one() -> None:
    # app -> a -> x and app -> b -> c -> x: check reads what both a and c allow of x
    graph = Graph()
    for name in ("a", "b", "c", "x"):
        graph.add(name, Node(name, "1.0.0"))
    graph.edge("a", "x")
    graph.edge("b", "c")
    graph.edge("c", "x")
    graph.importer("app", "a")
    graph.importer("app", "b")
    x = _pkg(graph.to_environment("x", "npm", "package-lock.json"), "x")
    assert x.paths == (("app", "a", "x"), ("app", "b", "c", "x"))
    assert not x.paths_cut


def test_cycles_end() -> None:
    graph = Graph()
    for name in ("a", "b"):
        graph.add(name, Node(name, "1.0.0"))
    graph.edge("a", "b")
    graph.edge("b", "a")
    graph.importer("app", "a")
    env = graph.to_environment("x", "npm", "package-lock.json")
    assert _pkg(env, "a").paths == (("app", "a"), ("app", "a", "b", "a"))
    assert _pkg(env, "b").paths == (("app", "a", "b"),)


def test_a_chained_yarn_lock_says_so_in_json() -> None:
    length = 3_000
    blocks = ["# yarn lockfile v1\n"]
    for i in range(length):
        blocks.append(f'p{i}@^1.0.0:\n  version "1.0.0"\n'
                      + (f'  dependencies:\n    p{i + 1} "^1.0.0"\n' if i + 1 < length else ""))
    manifest = json.dumps({"name": "chain", "dependencies": {"p0": "^1.0.0"}}).encode()
    env = YarnClassicExtractor().extract(
        "yarn.lock", "\n".join(blocks).encode(),
        lambda name: manifest if name == "package.json" else None)
    doc = json.loads(inventory_json([env], []))
    found = {p["name"]: p for p in doc["environments"][0]["packages"]}
    assert found[f"p{length - 1}"]["paths_cut"] is True
    assert CUT in found[f"p{length - 1}"]["paths"][0]
    assert found["p1"]["paths"] == [["chain", "p0", "p1"]] and found["p1"]["paths_cut"] is False
