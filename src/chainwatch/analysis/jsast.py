"""Parsing JS/TS with tree-sitter and running rule queries on the tree."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import tree_sitter as ts
import tree_sitter_javascript
import tree_sitter_typescript

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


def run_query(tree: ts.Tree, query: ts.Query) -> list[QueryHit]:
    """One hit per match: the ``@hit`` capture if the query names one, else the first node."""
    hits: list[QueryHit] = []
    for _, captures in ts.QueryCursor(query).matches(tree.root_node):
        nodes = captures.get("hit") or next(iter(captures.values()), [])
        if nodes:
            node = nodes[0]
            hits.append(QueryHit(node.start_byte, node.end_byte - node.start_byte))
    return hits
