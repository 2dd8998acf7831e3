"""Per-package views of known-bad sources, and several sources asked as one (no database code:
a ``check`` with nothing stored imports no SQLAlchemy)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chainwatch.model import Advisory


class _SourceView:
    """A per-package view of a source that has no faster way (the built-in list is a dict)."""

    def __init__(self, source: Any, name: str) -> None:
        self.source, self.name = source, name

    def lookup(self, version: str) -> list[Advisory]:
        return list(self.source.lookup(self.name, version))


def package_view(source: Any, name: str) -> Any:
    """An object whose ``lookup(version)`` answers for one package, reading the source once."""
    view = getattr(source, "package_view", None)
    return view(name) if callable(view) else _SourceView(source, name)


def package_views(source: Any, names: Iterable[str]) -> dict[str, Any]:
    """``package_view`` of each name, in one pass over the source when it can do that."""
    many = getattr(source, "package_views", None)
    if callable(many):
        return dict(many(names))
    return {name: package_view(source, name) for name in set(names)}



class CombinedKnownBad:
    """Several sources asked in turn (the database, then the built-in list)."""

    def __init__(self, *sources: Any) -> None:
        self.sources = sources

    @property
    def generation(self) -> tuple[Any, ...] | None:
        """Changes whenever one of the sources says it changed; None when one cannot say."""
        each = tuple(getattr(s, "generation", None) for s in self.sources)
        return None if None in each else each

    def lookup(self, name: str, version: str) -> list[Advisory]:
        return self.package_view(name).lookup(version)

    def package_view(self, name: str) -> _CombinedView:
        return _CombinedView([package_view(s, name) for s in self.sources])

    def package_views(self, names: Iterable[str]) -> dict[str, _CombinedView]:
        wanted = set(names)
        each = [package_views(s, wanted) for s in self.sources]
        return {name: _CombinedView([views[name] for views in each]) for name in wanted}


class _CombinedView:
    def __init__(self, views: list[Any]) -> None:
        self.views = views

    def lookup(self, version: str) -> list[Advisory]:
        seen: dict[str, Advisory] = {}
        for view in self.views:
            for advisory in view.lookup(version):
                seen.setdefault(advisory.id, advisory)
        return list(seen.values())
