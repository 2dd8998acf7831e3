"""Counted nouns for messages a person reads: "1 package", "2 packages", "no findings"."""

from __future__ import annotations

#: nouns whose plural is not the noun plus "s"
_IRREGULAR = {"entry": "entries", "advisory": "advisories", "npm advisory": "npm advisories",
              "dependency": "dependencies", "match": "matches", "is": "are", "was": "were"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless the count is exactly one."""
    return f"{count:,} {noun_for(count, noun, many)}"


def noun_for(count: int, noun: str, many: str | None = None) -> str:
    if count == 1:
        return noun
    return many or _IRREGULAR.get(noun) or noun + "s"
