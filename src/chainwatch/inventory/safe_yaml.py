"""YAML from strangers: libyaml's parser, a composer that counts, PyYAML's safe constructor.

An alias makes a document a graph: ``b: [*a, *a, …]`` nine times over is a few hundred bytes
that expand to hundreds of millions of nodes the moment anything walks, prints or copies the
result (the "billion laughs"). PyYAML shares aliased objects, so the cost lands later, in our
own code, unbounded. The composer here weighs every node as it would be expanded (an alias
weighs what its anchor does) and refuses the document as soon as the expanded weight, the
number of aliases, the nesting depth or the size crosses a limit: the cost of refusing is one
pass over the events, never the expansion. Real lockfiles (pnpm, yarn berry) use no aliases
at all and nest a handful of levels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, Event, MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.resolver import Resolver

from chainwatch.inventory.base import InventoryError

_Parser: type
try:  # libyaml's parser when PyYAML was built with it (the events are the same either way)
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - pure-Python PyYAML
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)

#: Text larger than this is refused before parsing (the largest real pnpm lockfiles are ~10 MB).
MAX_BYTES = 32 * 1024 * 1024
#: Nodes after expanding every alias, summed over the documents of one file.
MAX_NODES = 2_000_000
#: Alias uses in one file (pnpm and yarn write none).
MAX_ALIASES = 1_000
#: Nesting of mappings and sequences (lockfiles nest about six levels).
MAX_DEPTH = 64


class _BoundedComposer(Composer):
    """PyYAML's composer with a budget: depth, aliases and expanded node weight."""

    if TYPE_CHECKING:  # provided by the parser this composer is mixed with
        def check_event(self, *choices: type[Event]) -> bool: ...
        def peek_event(self) -> Event: ...
        def get_event(self) -> Event: ...

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._aliases = 0
        self._expanded = 0
        self._weight: dict[int, int] = {}

    def _charge(self, weight: int) -> None:
        self._expanded += weight
        if self._expanded > MAX_NODES:
            raise InventoryError(f"YAML expands to more than {MAX_NODES:,} nodes (alias bomb?)")

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise InventoryError(f"YAML uses more than {MAX_ALIASES} aliases")
            anchor = getattr(event, "anchor", None)
            if anchor not in self.anchors:
                raise InventoryError(f"YAML alias *{anchor} names no anchor")
            node: Node | None = self.anchors[anchor]
            if node is None or id(node) not in self._weight:  # an alias inside its own anchor: a cycle
                raise InventoryError(f"YAML alias *{anchor} refers to itself")
            self._charge(self._weight[id(node)])
            self.get_event()
            return node
        if self.check_event(SequenceStartEvent, MappingStartEvent):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise InventoryError(f"YAML nested deeper than {MAX_DEPTH} levels")
        before = self._expanded
        node = super().compose_node(parent, index)
        assert node is not None
        if isinstance(node, SequenceNode | MappingNode):
            self._depth -= 1
        self._charge(1)
        self._weight[id(node)] = self._expanded - before
        return node


class BoundedSafeLoader(_BoundedComposer, _Parser, SafeConstructor, Resolver):  # type: ignore[misc]
    """SafeLoader semantics (plain data only) with the composer's budget; the composer comes
    first so that libyaml's own (unbounded) composer is never used, only its events."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)  # type: ignore[misc]
        _BoundedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream from a stranger; InventoryError when it is not
    plain, bounded YAML."""
    if len(text) > MAX_BYTES:
        raise InventoryError(f"YAML larger than {MAX_BYTES} bytes")
    loader = BoundedSafeLoader(text)
    try:
        docs: list[Any] = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            docs.append(loader.get_data())
        return docs
    except yaml.YAMLError as exc:
        raise InventoryError(f"not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise InventoryError("YAML nested too deeply") from exc
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """The single document of a YAML stream (None when empty)."""
    docs = load_all(text)
    if len(docs) > 1:
        raise InventoryError("more than one YAML document")
    return docs[0] if docs else None


__all__ = ["MAX_ALIASES", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "BoundedSafeLoader", "load",
           "load_all"]
