"""Ordering npm versions by semver, tolerant of the odd old version string."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import semver


@lru_cache(maxsize=65536)
def parse(version: str) -> semver.Version | None:
    try:
        return semver.Version.parse(version.lstrip("v="))
    except (ValueError, TypeError):
        return None


def precedence(v: semver.Version) -> tuple[object, ...]:
    """A sort key with semver precedence (prereleases before their release; numeric
    identifiers numerically and below alphanumeric ones), cheaper than comparing Versions."""
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                  for p in (v.prerelease or "").split(".") if p)
    return (v.major, v.minor, v.patch, 0 if parts else 1, parts)


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Valid semver versions in ascending order; invalid ones are left out."""
    parsed = [(v, precedence(p)) for v in versions if (p := parse(v)) is not None]
    parsed.sort(key=lambda item: item[1])
    return [v for v, _ in parsed]


def previous_version(versions: Iterable[str], target: str) -> str | None:
    """The highest version below ``target``; for a stable target, the highest stable one."""
    tv = parse(target)
    if tv is None:
        return None
    top = precedence(tv)
    lower = [(v, p) for v in versions if (p := parse(v)) is not None and precedence(p) < top]
    if not tv.prerelease:
        stable = [(v, p) for v, p in lower if not p.prerelease]
        lower = stable or lower
    if not lower:
        return None
    return max(lower, key=lambda item: precedence(item[1]))[0]


def bump_kind(old: str, new: str) -> str:
    """``major``, ``minor``, ``patch`` or ``prerelease``: what kind of release ``new`` is."""
    a, b = parse(old), parse(new)
    if a is None or b is None:
        return "unknown"
    if b.major != a.major:
        return "major"
    if b.minor != a.minor:
        return "minor"
    if b.patch != a.patch:
        return "patch"
    return "prerelease"
