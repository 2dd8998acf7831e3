"""Structural-search bombs: shapes that make tree-sitter matching slow (its time grows with the
nodes times the depth a match may start at: 50,000 nested calls took 9 s in the browser-hook
query, 128,000 nested assignments about a minute). Matches start at most
``jsast.MAX_START_DEPTH`` deep, and a file nesting deeper is `CW-ANALYSIS-LIMIT` (medium, a trust
signal): the release is never judged benign on a file chainwatch did not search whole.
Asserted by what is found and where, never by timing."""

from __future__ import annotations

import pytest

from chainwatch.analysis import jsast
from chainwatch.analysis.engine import ANALYSIS_LIMIT, Engine
from chainwatch.analysis.hooks import find_hooks
from chainwatch.analysis.rules import load_rules
from chainwatch.model import Level, PackageFile, PackageRef
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import manifest

ENGINE = Engine(load_rules())
HOOK = "const real = window.fetch;\nwindow.fetch = function (u, o) { return real(u, o); };\n"


def nested_calls(depth: int) -> str:
    return "var x = " + "f(" * depth + "1" + ")" * depth + ";\n"


def rules(src: str) -> set[str]:
    return {f.rule for f in ENGINE.scan_file(PackageFile("index.js", src.encode()))}


@pytest.mark.parametrize("bomb", [nested_calls(50_000), "a=" * 50_000 + "1;\n"])
def test_a_deep_file_is_searched_down_to_the_bound_and_named(bomb: str) -> None:
    found = rules(bomb + HOOK)
    assert ANALYSIS_LIMIT in found
    assert "CW-BROWSER-FETCH-HOOK" in found  # the hook beside the bomb is still seen


def test_ordinary_nesting_is_searched_whole() -> None:
    found = rules(nested_calls(100) + HOOK)
    assert ANALYSIS_LIMIT not in found and "CW-BROWSER-FETCH-HOOK" in found


def test_a_hook_hidden_below_the_bound_is_not_searched_but_never_benign() -> None:
    deep = jsast.MAX_START_DEPTH + 100
    hidden = "{" * deep + HOOK + "}" * deep
    assert not find_hooks(hidden.encode(), "javascript")  # the bound holds
    files = {"package.json": manifest(name="deep", version="1.0.1"), "index.js": hidden}
    verdict = Scanner(None, workers=1).analyze(
        Loaded(PackageRef("deep", "1.0.1"), scan_snippet_files(files)), None)
    (limit,) = [f for f in verdict.findings if f.rule == ANALYSIS_LIMIT]
    assert limit.severity.value == "medium" and limit.capability == "analysis-incomplete"
    assert verdict.level is not Level.BENIGN


def test_the_same_hook_above_the_bound_is_found() -> None:
    shallow = jsast.MAX_START_DEPTH // 2 - 10
    found = rules("{" * shallow + HOOK + "}" * shallow)
    assert ANALYSIS_LIMIT not in found and "CW-BROWSER-FETCH-HOOK" in found


def test_depth_is_measured_exactly() -> None:
    tree = jsast.parse(b"x = [[[1]]];", "javascript")
    depth = 0
    node = tree.root_node.descendant_for_byte_range(8, 8)  # the 1
    while node is not None and node.parent is not None:
        depth, node = depth + 1, node.parent
    assert jsast.deeper_than(tree.root_node, depth - 1)
    assert not jsast.deeper_than(tree.root_node, depth)


def test_a_second_copy_of_a_deep_file_is_named_too() -> None:
    """The hook and chain analyses are cached by content: a copy searched from the cache (in
    another file, package or install-time role) still carries the limit."""
    deep = jsast.MAX_START_DEPTH + 100
    src = ("{" * deep + HOOK + "}" * deep).encode()
    first = ENGINE.scan_file(PackageFile("a.js", src))
    again = ENGINE.scan_file(PackageFile("b.js", src), install_time=True)  # no result cache
    assert ANALYSIS_LIMIT in {f.rule for f in first} and ANALYSIS_LIMIT in {f.rule for f in again}
