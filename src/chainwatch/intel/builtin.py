"""The known-bad list shipped with chainwatch (``data/known-bad.yml``), for offline use."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml

from chainwatch.model import Advisory


@cache
def _load() -> dict[tuple[str, str], tuple[Advisory, ...]]:
    text = (resources.files("chainwatch") / "data" / "known-bad.yml").read_text(encoding="utf-8")
    index: dict[tuple[str, str], list[Advisory]] = {}
    for campaign in yaml.safe_load(text)["campaigns"]:
        for name, versions in campaign["packages"].items():
            advisory = Advisory(
                id=campaign["id"], package=name, versions=tuple(versions),
                summary=campaign["title"], source="chainwatch built-in list",
                references=tuple(campaign.get("references", ())),
                published=campaign.get("published"))
            for version in versions:
                index.setdefault((name, version), []).append(advisory)
    return {k: tuple(v) for k, v in index.items()}


class BuiltinKnownBad:
    """Exact name@version matches against the built-in list."""

    #: the list never changes while the process runs (see ``KnownBadStore.generation``)
    generation = 0

    def lookup(self, name: str, version: str) -> list[Advisory]:
        return list(_load().get((name, version), ()))

    def __len__(self) -> int:
        return len(_load())
