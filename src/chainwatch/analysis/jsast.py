"""Parsing JS/TS with tree-sitter and running rule queries on the tree."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, ParamSpec, TypeVar

import tree_sitter as ts
import tree_sitter_javascript
import tree_sitter_typescript

P = ParamSpec("P")
R = TypeVar("R")

JS_EXT = (".js", ".mjs", ".cjs", ".jsx")
TS_EXT = (".ts", ".mts", ".cts")
TSX_EXT = (".tsx",)


@cache
def language(kind: str) -> ts.Language:
    if kind == "typescript":
        return ts.Language(tree_sitter_typescript.language_typescript())
    if kind == "tsx":
        return ts.Language(tree_sitter_typescript.language_tsx())
    return ts.Language(tree_sitter_javascript.language())


def language_kind(path: str) -> str:
    low = path.lower()
    if low.endswith(TS_EXT):
        return "typescript"
    if low.endswith(TSX_EXT):
        return "tsx"
    return "javascript"


@cache
def compile_query(kind: str, source: str) -> ts.Query | None:
    """The query for a language, or None when it does not apply to that grammar."""
    try:
        return ts.Query(language(kind), source)
    except (ts.QueryError, ValueError):
        return None


@dataclass(frozen=True)
class QueryHit:
    offset: int
    length: int


#: Texts up to this size keep their last trees: the query rules, the normaliser and the
#: behaviour chains read the same file one after the other and need not parse it again.
REUSE_BYTES = 256 * 1024


def parse(data: bytes, kind: str) -> ts.Tree:
    """The tree of a text (trees are never edited in place, so one may be handed out twice)."""
    if len(data) <= REUSE_BYTES:
        return _parse_reused(data, kind)
    return ts.Parser(language(kind)).parse(data)


@lru_cache(maxsize=4)
def _parse_reused(data: bytes, kind: str) -> ts.Tree:
    return ts.Parser(language(kind)).parse(data)


#: Query matches start no deeper than this in the tree. Matching costs time proportional to
#: the nodes times the nesting a match may start at: 50,000 nested calls (100 kB) took 9 s in
#: the browser-hook query and 128,000 nested assignments about a minute, unbounded; 0.5 s at
#: this depth. Real code nests far less (the deepest of 19,366 files of 40 popular packages:
#: 200, next's babel bundle).
MAX_START_DEPTH = 500

class Limits:
    """What the queries run in one context could not search, and the trees already looked at."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        #: (node id, start, end, nodes) -> deeper than MAX_START_DEPTH: a file's trees are
        #: searched by several queries, and walked once
        self.deep: dict[tuple[int, int, int, int], bool] = {}


_LIMITS: ContextVar[Limits | None] = ContextVar("_LIMITS", default=None)


@contextmanager
def limits_met() -> Iterator[list[str]]:
    """The queries run inside name here what they could not search (a tree nesting deeper than
    MAX_START_DEPTH: nothing below it was searched), each once."""
    limits = Limits()
    token = _LIMITS.set(limits)
    try:
        yield limits.notes
    finally:
        _LIMITS.reset(token)


def _note(notes: Iterable[str]) -> None:
    limits = _LIMITS.get()
    if limits is not None:
        limits.notes.extend(n for n in notes if n not in limits.notes)


def noting_cache(maxsize: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``lru_cache`` for a function whose queries may note limits: the notes are kept with
    the result and given again to every caller, so a file searched from the cache is named
    as one searched afresh (a second copy of a deep file is as deep as the first)."""
    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @lru_cache(maxsize=maxsize)
        def remembered(*args: Any) -> tuple[R, tuple[str, ...]]:
            with limits_met() as notes:
                result = fn(*args)  # type: ignore[call-arg]
            return result, tuple(notes)

        @functools.wraps(fn)
        def cached(*args: P.args, **kwargs: P.kwargs) -> R:
            assert not kwargs, "positional arguments only (they are the cache key)"
            result, notes = remembered(*args)
            _note(notes)
            return result

        cached.cache_clear = remembered.cache_clear  # type: ignore[attr-defined]
        cached.cache_info = remembered.cache_info  # type: ignore[attr-defined]
        return cached
    return decorate


def deeper_than(node: ts.Node, depth: int) -> bool:
    """Whether some node lies more than ``depth`` levels below ``node``. Only subtrees large
    enough to reach that far are walked (each level holds a node at least), so ordinary
    trees cost a few hundred steps."""
    stack = [(node, 0)]
    while stack:
        cur, level = stack.pop()
        if level > depth:
            return True
        need = depth - level  # nodes a child's subtree must hold to reach past ``depth``
        stack.extend((child, level + 1) for child in cur.children
                     if child.descendant_count > need)
    return False


def _cursor(query: ts.Query, node: ts.Node, max_start_depth: int) -> ts.QueryCursor:
    cursor = ts.QueryCursor(query)
    cursor.set_max_start_depth(max_start_depth)
    limits = _LIMITS.get()
    if limits is not None and max_start_depth >= MAX_START_DEPTH:
        key = (node.id, node.start_byte, node.end_byte, node.descendant_count)
        deep = limits.deep.get(key)
        if deep is None:
            deep = limits.deep[key] = deeper_than(node, MAX_START_DEPTH)
        if deep:
            _note([_DEEP])
    return cursor


_DEEP = f"nested deeper than {MAX_START_DEPTH} levels: not searched below that"


def matches(query: ts.Query, node: ts.Node, *, max_start_depth: int = MAX_START_DEPTH
            ) -> list[tuple[int, dict[str, list[ts.Node]]]]:
    """The matches of ``query`` under ``node`` that start at most ``max_start_depth`` deep."""
    return _cursor(query, node, max_start_depth).matches(node)


def captures(query: ts.Query, node: ts.Node) -> dict[str, list[ts.Node]]:
    """The captures of ``query`` under ``node`` (matches starting at most MAX_START_DEPTH
    deep)."""
    return _cursor(query, node, MAX_START_DEPTH).captures(node)


def run_query(tree: ts.Tree, query: ts.Query) -> list[QueryHit]:
    """One hit per match: the ``@hit`` capture if the query names one, else the first node."""
    hits: list[QueryHit] = []
    for _, captures in matches(query, tree.root_node):
        nodes = captures.get("hit") or next(iter(captures.values()), [])
        if nodes:
            node = nodes[0]
            hits.append(QueryHit(node.start_byte, node.end_byte - node.start_byte))
    return hits
