"""Signals from the registry's metadata: who published, with what trust, and how the name looks.

Works on full-format packuments (``_npmUser``, ``maintainers``, ``time``, ``dist.attestations``)
and degrades gracefully on trimmed ones: a signal whose inputs are absent is not raised.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from chainwatch.manifest import Manifest
from chainwatch.model import Finding, Release, Severity
from chainwatch.output.words import plural
from chainwatch.packument import release_from_packument
from chainwatch.versions import parse, sort_versions

REF = "https://docs.npmjs.com/generating-provenance-statements"


def _signal(rule: str, severity: Severity, capability: str, message: str,
            file: str | None = None) -> Finding:
    return Finding(rule=rule, severity=severity, technique="metadata", capability=capability,
                   message=message, file=file, reference=REF)


def parse_time(stamp: object) -> datetime | None:
    """An ISO timestamp from a packument's ``time`` map, or None for anything else (a
    registry controls these: numbers, lists and odd strings must not break a whole package).
    A time without a zone is read as UTC, so every result compares with every other."""
    if not isinstance(stamp, str) or not stamp or len(stamp) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _domain(email: str | None) -> str | None:
    return email.rsplit("@", 1)[-1].lower() if email and "@" in email else None


@cache
def top_packages() -> frozenset[str]:
    text = (resources.files("chainwatch") / "data" / "top-npm.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def osa_distance(a: str, b: str, limit: int = 3) -> int:
    """Optimal string alignment distance (edits plus adjacent swaps), capped at ``limit``."""
    if abs(len(a) - len(b)) >= limit:
        return limit
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return min(prev[len(b)], limit)


_SEPARATORS = re.compile(r"[-_.]")


def typosquat_target(name: str) -> str | None:
    """The popular package this name imitates, if any."""
    top = top_packages()
    if name in top:
        return None
    bare = name.split("/", 1)[-1]
    squashed = _SEPARATORS.sub("", bare)
    for known in sorted(top, key=lambda k: (k.startswith("@"), k)):
        kb = known.split("/", 1)[-1]
        if len(kb) < 4:
            continue
        if squashed == _SEPARATORS.sub("", kb) and bare != kb:
            return known
        if bare != kb and osa_distance(bare, kb, 2) == 1 and len(kb) >= 5:
            return known
        if name.startswith("@") and bare == known:
            return known  # @evil/lodash imitating lodash
    return None


_INTERNAL = re.compile(r"(^|[-_.])(internal|private|corp|intranet|infra|sandbox)([-_.]|$)")


def _manifest_confusion(doc: dict[str, Any], tarball_manifest: Mapping[str, Any]) -> list[str]:
    diffs = []
    for key in ("name", "version", "scripts", "dependencies", "bin", "optionalDependencies"):
        a, b = doc.get(key), tarball_manifest.get(key)
        if (a or None) != (b or None):
            diffs.append(key)
    return diffs


def name_signals(name: str, version: str, known_versions: int) -> list[Finding]:
    """Signals from the name and version alone: they need no registry metadata."""
    out: list[Finding] = []
    v = parse(version)
    if (v is not None and v.major >= 90 and _INTERNAL.search(name.split("/")[-1])
            and known_versions <= 3):
        out.append(_signal(
            "CW-META-DEPENDENCY-CONFUSION", Severity.HIGH, "dependency-confusion",
            f"internal-looking name with version {version}: a dependency-confusion probe"))
    squatted = typosquat_target(name)
    if squatted:
        out.append(_signal(
            "CW-META-TYPOSQUAT", Severity.MEDIUM, "typosquat",
            f"name imitates the popular package {squatted!r}"))
    return out


def metadata_signals(
    packument: dict[str, Any] | None,
    release: Release | None,
    baseline: Release | None,
    tarball_manifest: Manifest | None,
    names: bool = True,
) -> list[Finding]:
    """``names=False`` leaves out the signals of the name alone (typosquat, dependency
    confusion): the gate reads only publisher and trust signals, and the typosquat search is
    most of the cost of judging a release from its packument."""
    if release is None:
        return []
    out: list[Finding] = []
    name, version = release.ref.name, release.ref.version
    versions = packument.get("versions", {}) if packument else {}
    times = packument.get("time", {}) if packument else {}
    if not isinstance(times, dict):
        times = {}
    ordered = sort_versions(versions)
    target = parse(version)
    earlier = ordered[: ordered.index(version)] if version in ordered else [
        v for v in ordered if target is not None and (p := parse(v)) is not None and p < target]
    recent = [release_from_packument(packument, v) for v in earlier[-10:]] if packument else []

    # -- publisher and maintainers ------------------------------------------------------------
    known_publishers = {r.publisher for r in recent if r.publisher}
    if release.publisher and known_publishers and release.publisher not in known_publishers:
        out.append(_signal(
            "CW-META-NEW-PUBLISHER", Severity.MEDIUM, "publisher-change",
            f"published by {release.publisher!r}, who published none of the previous "
            f"{plural(len(recent), 'version')} (they were: "
            f"{', '.join(sorted(known_publishers))})"))
    domains = {d for r in recent if (d := _domain(r.publisher_email))}
    new_domain = _domain(release.publisher_email)
    if new_domain and domains and new_domain not in domains:
        out.append(_signal(
            "CW-META-EMAIL-DOMAIN", Severity.MEDIUM, "publisher-change",
            f"publisher e-mail domain {new_domain!r} differs from earlier ones "
            f"({', '.join(sorted(domains))})"))
    if baseline and baseline.maintainers and release.maintainers:
        added = sorted(set(release.maintainers) - set(baseline.maintainers))
        removed = sorted(set(baseline.maintainers) - set(release.maintainers))
        if added or removed:
            out.append(_signal(
                "CW-META-MAINTAINERS", Severity.LOW, "publisher-change",
                f"maintainers changed since {baseline.ref.version}: added {added or 'none'}, "
                f"removed {removed or 'none'}"))

    # -- trust ----------------------------------------------------------------------------------
    previous = recent[-3:]
    if previous and any(r.has_provenance for r in previous) and not release.has_provenance:
        out.append(_signal(
            "CW-META-PROVENANCE-LOST", Severity.HIGH, "trust-downgrade",
            "no provenance attestation, though the previous releases had one"))
    if previous and any(r.trusted_publisher for r in previous) and not release.trusted_publisher:
        out.append(_signal(
            "CW-META-TRUSTED-PUBLISHING-LOST", Severity.HIGH, "trust-downgrade",
            "not published through trusted publishing (OIDC), though the previous releases were"))
    if baseline and baseline.git_head and not release.git_head:
        out.append(_signal(
            "CW-META-GITHEAD-MISSING", Severity.LOW, "trust-downgrade",
            f"no gitHead, though {baseline.ref.version} recorded the commit it was built from"))

    # -- timing -----------------------------------------------------------------------------
    if baseline and isinstance(times, dict):
        t_new, t_old = parse_time(times.get(version)), parse_time(times.get(baseline.ref.version))
        if t_new and t_old and (t_new - t_old).days >= 365:
            out.append(_signal(
                "CW-META-DORMANT", Severity.LOW, "publisher-change",
                f"published after {(t_new - t_old).days} days without a release"))

    # -- manifest confusion -----------------------------------------------------------------
    if tarball_manifest is not None and tarball_manifest.raw and release.manifest:
        diffs = _manifest_confusion(release.manifest, tarball_manifest.raw)
        if diffs:
            out.append(_signal(
                "CW-META-MANIFEST-CONFUSION", Severity.HIGH, "manifest-confusion",
                f"the tarball's package.json differs from the registry's in: {', '.join(diffs)}",
                "package.json"))

    # -- names ------------------------------------------------------------------------------
    if names:
        out.extend(name_signals(name, version, len(ordered)))
    return out


#: A dependency created this close to the release that adds it is suspect.
YOUNG_DEPENDENCY_DAYS = 7


def young_dependencies(added: dict[str, str], created: dict[str, str | None],
                       published: str | None) -> list[Finding]:
    """New dependencies whose package was created days before (or after) this release.

    ``created`` maps a dependency to its packument's ``time.created``; a missing entry means
    the registry could not be asked, and nothing is said about that dependency.
    """
    out: list[Finding] = []
    when = parse_time(published)
    for dep in sorted(added):
        born = parse_time(created.get(dep))
        if born is None:
            continue
        age = (when - born).days if when else None
        if age is None or age < YOUNG_DEPENDENCY_DAYS:
            if age is None:
                shown = "an unknown time before this release"
            elif age < 0:  # the dependency is younger than the release that names it
                shown = f"{-age} days after this release was published"
            else:
                shown = f"{age} days before this release"
            out.append(_signal(
                "CW-META-YOUNG-DEPENDENCY", Severity.MEDIUM, "new-dependency",
                f"new dependency {dep}@{added[dep]} was created {shown}",
                "package.json"))
    return out
