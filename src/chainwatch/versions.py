"""Ordering npm versions by semver, tolerant of the odd old version string."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
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


@lru_cache(maxsize=512)
def _ordered(versions: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[tuple[object, ...], ...]]:
    """The valid versions in ascending order, and their sort keys (cached: a packument's
    versions are ordered once, however many of them are asked about)."""
    parsed = sorted(((precedence(p), v) for v in versions if (p := parse(v)) is not None),
                    key=lambda item: item[0])
    return tuple(v for _, v in parsed), tuple(k for k, _ in parsed)


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Valid semver versions in ascending order; invalid ones are left out."""
    return list(_ordered(tuple(versions))[0])


def previous_version(versions: Iterable[str], target: str) -> str | None:
    """The highest version below ``target``; for a stable target, the highest stable one."""
    tv = parse(target)
    if tv is None:
        return None
    ordered, keys = _ordered(tuple(versions))
    below = bisect_left(keys, precedence(tv))
    if below == 0:
        return None
    if not tv.prerelease:
        for i in range(below - 1, -1, -1):
            candidate = parse(ordered[i])
            if candidate is not None and not candidate.prerelease:
                return ordered[i]
    return ordered[below - 1]


def previous_versions(versions: Iterable[str]) -> dict[str, str | None]:
    """``previous_version`` of every version at once, in one pass over the sorted order."""
    ordered, keys = _ordered(tuple(versions))
    out: dict[str, str | None] = {}
    last_any: str | None = None
    last_stable: str | None = None
    i = 0
    while i < len(ordered):
        j = i  # versions of equal precedence ("1.0.0" and "v1.0.0") share their predecessors
        while j < len(ordered) and keys[j] == keys[i]:
            j += 1
        # keys[k][3] is 0 for a prerelease (see ``precedence``): no version parsed again
        for k in range(i, j):
            out[ordered[k]] = last_any if keys[k][3] == 0 else (last_stable or last_any)
        for k in range(i, j):
            last_any = ordered[k]
            if keys[k][3] != 0:
                last_stable = ordered[k]
        i = j
    return out


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


#: A baseline must have been published this long before the release it judges. An attacker
#: who publishes 1.0.1 and then 1.0.2 with the same payload would otherwise have 1.0.2 diffed
#: against 1.0.1 and found to add nothing: the burst is judged against the release before it.
SETTLE = timedelta(days=3)


def settled_baseline(previous: Mapping[str, str | None],
                     published: Callable[[str], datetime | None], version: str,
                     settle: timedelta = SETTLE) -> str | None:
    """``baseline_choice`` without the reason."""
    return baseline_choice(previous, published, version, settle)[0]


def baseline_choice(previous: Mapping[str, str | None],
                    published: Callable[[str], datetime | None], version: str,
                    settle: timedelta = SETTLE,
                    now: datetime | None = None) -> tuple[str | None, str | None]:
    """What ``version`` is diffed against, and why in one line when that is not its previous
    version (along ``previous``, the semver order): the newest earlier version that is not
    part of a burst with it. An earlier version published at least ``settle`` before it has
    settled. One published at least ``settle`` *after* it (a backport to an older branch, or
    a mirror's rewritten times) says nothing of a burst leading up to it and is taken too,
    once it is itself ``settle`` old. One published within ``settle`` of it, on either side,
    is of its burst (an attacker's 1.0.1 then 1.0.2, or 1.0.2 then 1.0.1) and is passed over;
    when every earlier one is, the oldest of them (the release before the burst began).
    Without publish times, the previous version."""
    when = published(version)
    now = now or datetime.now(UTC)
    first = candidate = previous.get(version)
    burst: list[str] = []
    young: list[str] = []
    seen: set[str] = set()
    while candidate is not None and candidate not in seen:
        seen.add(candidate)
        then = published(candidate)
        if when is None or then is None or when - then >= settle:
            break
        if then - when >= settle:
            if now - then >= settle:
                break
            passed = young
        else:
            passed = burst
        earlier = previous.get(candidate)
        if earlier is None:
            break
        passed.append(candidate)
        candidate = earlier
    if candidate == first or not (burst or young):
        return candidate, None
    days = f"{settle.total_seconds() / 86400:g} days"
    why = []
    if burst:
        why.append(f"{_some(burst)} published within {days} of {version} (a burst)")
    if young:
        why.append(f"{_some(young)} published after it, less than {days} ago")
    return candidate, f"judged against {candidate}, not {first}: " + "; ".join(why)


def _some(versions: list[str]) -> str:
    return ", ".join(versions[:3]) + (f" and {len(versions) - 3} more" if len(versions) > 3
                                      else "")


#: node-semver refuses longer version and range strings; so do we (bounds regex work).
MAX_SPEC_LENGTH = 256
_TAG = re.compile(r"^[A-Za-z0-9\-_.!~*'()]+$")


def spec_kind(wanted: str) -> str | None:
    """What npm-package-arg makes of a registry spec: ``version``, ``range`` or ``tag``; None
    when it is none of these (a tag with characters ``encodeURIComponent`` would escape)."""
    import nodesemver  # its 37 regexes compile on import: only for what reads a range

    if len(wanted) > MAX_SPEC_LENGTH:
        return None
    if nodesemver.valid(wanted, True) is not None:
        return "version"
    if nodesemver.valid_range(wanted, True) is not None:
        return "range"
    return "tag" if _TAG.match(wanted) else None


def clean(version: str) -> str | None:
    """``semver.clean(version, {loose: true})``: ``=v1.2.3 `` becomes ``1.2.3``."""
    import nodesemver

    if len(version) > MAX_SPEC_LENGTH:
        return None
    parsed = nodesemver.valid(version.strip(), True)
    return None if parsed is None else str(parsed.version)


def range_matcher(wanted: str) -> Callable[[str], bool] | None:
    """``semver.satisfies(v, wanted, {loose: true})`` as a test, the range parsed once;
    prereleases match only when the range names one with the same major.minor.patch.
    None when ``wanted`` is not a range."""
    import nodesemver

    if len(wanted) > MAX_SPEC_LENGTH:
        return None
    try:
        parsed = nodesemver.make_range(wanted, True)
    except (ValueError, TypeError):
        return None

    def test(version: str) -> bool:
        if len(version) > MAX_SPEC_LENGTH:
            return False
        try:
            return bool(parsed.test(version))
        except (ValueError, TypeError):
            return False

    return test


def rcompare_key(version: str) -> tuple[object, ...]:
    """A sort key for ``semver.rcompare`` order (loose parse), highest first when reversed."""
    import nodesemver

    parsed = nodesemver.parse(version, True)
    if parsed is None:
        return (-1,)
    pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in parsed.prerelease)
    return (parsed.major, parsed.minor, parsed.patch, 0 if pre else 1, pre)
