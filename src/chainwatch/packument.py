"""Reading what a packument says about one release."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chainwatch.errors import NotFoundError, UsageError
from chainwatch.model import PackageRef, Release
from chainwatch.versions import (
    baseline_choice,
    clean,
    previous_versions,
    range_matcher,
    rcompare_key,
    spec_kind,
)


def _str_dict(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str | int | float)}


def _person(value: object) -> tuple[str | None, str | None]:
    if isinstance(value, dict):
        name, email = value.get("name"), value.get("email")
        return (name if isinstance(name, str) else None, email if isinstance(email, str) else None)
    if isinstance(value, str):
        name, _, rest = value.partition("<")
        return name.strip() or None, rest.rstrip(">").strip() or None
    return None, None


def version_doc(packument: dict[str, Any], version: str) -> dict[str, Any]:
    versions = packument.get("versions")
    doc = versions.get(version) if isinstance(versions, dict) else None
    if not isinstance(doc, dict):
        name = packument.get("name", "?")
        raise NotFoundError(f"no such version in the registry: {name}@{version}")
    return doc


def release_from_packument(packument: dict[str, Any], version: str) -> Release:
    doc = version_doc(packument, version)
    name = str(packument.get("name") or doc.get("name") or "")
    dist = doc.get("dist") if isinstance(doc.get("dist"), dict) else {}
    assert isinstance(dist, dict)
    npm_user = doc.get("_npmUser")
    publisher, email = _person(npm_user)
    maintainers = tuple(
        sorted(n for m in doc.get("maintainers") or [] if (n := _person(m)[0]) is not None)
    )
    attestations = dist.get("attestations")
    has_provenance = isinstance(attestations, dict) and bool(attestations.get("provenance"))
    trusted = isinstance(npm_user, dict) and bool(npm_user.get("trustedPublisher"))
    times = packument.get("time") if isinstance(packument.get("time"), dict) else {}
    assert isinstance(times, dict)
    git_head = doc.get("gitHead")
    return Release(
        ref=PackageRef(name, version),
        published=times.get(version) if isinstance(times.get(version), str) else None,
        publisher=publisher,
        publisher_email=email,
        maintainers=maintainers,
        integrity=dist.get("integrity") if isinstance(dist.get("integrity"), str) else None,
        shasum=dist.get("shasum") if isinstance(dist.get("shasum"), str) else None,
        tarball_url=dist.get("tarball") if isinstance(dist.get("tarball"), str) else None,
        has_provenance=has_provenance,
        has_signatures=bool(dist.get("signatures")),
        trusted_publisher=trusted,
        scripts=_str_dict(doc.get("scripts")),
        dependencies=_str_dict(doc.get("dependencies")),
        git_head=git_head if isinstance(git_head, str) else None,
        manifest=doc,
    )


def baseline_version(packument: dict[str, Any], version: str) -> str | None:
    """What a release is diffed against: the newest earlier version that is not of its burst
    (``versions.baseline_choice``), never another release of the same burst."""
    return baseline_choice_of(packument, version)[0]


def baseline_choice_of(packument: dict[str, Any], version: str) -> tuple[str | None, str | None]:
    """``baseline_version`` and, when that is not the semver-previous version, why (one line)."""
    from chainwatch.analysis.metadata import parse_time

    versions = packument.get("versions")
    if not isinstance(versions, dict):
        return None, None
    times = packument.get("time") if isinstance(packument.get("time"), dict) else {}
    assert isinstance(times, dict)
    return baseline_choice(previous_versions(versions.keys()),
                           lambda v: parse_time(times.get(v)), version)


#: A range is tested against at most this many versions (about 3 s; real packages have a few
#: thousand). A packument with more fails closed: exact versions and dist-tags still work.
MAX_RANGE_VERSIONS = 50_000


@dataclass(frozen=True)
class Picked:
    """The version a spec resolved to, and how (for the notice telling the user)."""

    version: str
    #: "version", "tag" or "range": what the spec was
    kind: str
    #: how it was chosen, in words ("dist-tag next", "highest version satisfying ^4", …)
    how: str


def _truthy(value: object) -> bool:
    """JavaScript truthiness of a JSON value (``deprecated: ""`` is not deprecated; ``{}`` is)."""
    return value not in (None, False, 0, "") and value == value


def pick_version(packument: dict[str, Any], wanted: str | None) -> Picked:
    """The version npm would install for ``name@wanted`` (npm-pick-manifest): a dist-tag is
    exactly its version; a version is itself (``semver.clean``-ed); for a range the
    ``latest`` tag when it satisfies and is not deprecated, else the highest satisfying
    version, undeprecated ones first. Prereleases only when the range asks for them (node-semver).
    Engines are not weighed (chainwatch installs nothing, so there is no node to match)."""
    name = str(packument.get("name") or "?")
    raw = packument.get("versions")
    versions = raw if isinstance(raw, dict) else {}
    raw_tags = packument.get("dist-tags")
    tags = ({k: v for k, v in raw_tags.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(raw_tags, dict) else {})
    spec = (wanted or "").strip() or "*"
    kind = spec_kind(spec)
    if kind is None:
        raise UsageError(
            f"{name}@{wanted}: not a version, range or dist-tag (aliases, git, file and URL "
            "specs are not resolved by scan)")
    if kind == "tag":
        ver = tags.get(spec)
        if ver is None:
            known = ", ".join(sorted(tags)[:10]) or "none"
            raise NotFoundError(f"{name} has no dist-tag {spec!r} (its dist-tags: {known})")
        if not isinstance(versions.get(ver), dict):
            raise NotFoundError(
                f"{name}: dist-tag {spec!r} points at {ver}, which the registry does not serve")
        return Picked(ver, kind, f"dist-tag {spec}")
    if kind == "version":
        exact = clean(spec) or spec
        for candidate in (exact, spec):
            if isinstance(versions.get(candidate), dict):
                return Picked(candidate, kind, "exact version")
        raise NotFoundError(f"no such version in the registry: {name}@{exact}")
    test = range_matcher(spec)
    assert test is not None  # spec_kind said it is a range
    latest = tags.get("latest")
    if latest is not None and (spec == "*" or test(latest)):
        doc = versions.get(latest)
        if isinstance(doc, dict) and not _truthy(doc.get("deprecated")):
            return Picked(latest, kind, f"the latest dist-tag, which satisfies {spec}")
    if len(versions) > MAX_RANGE_VERSIONS:
        raise UsageError(
            f"{name} has {len(versions)} versions, more than {MAX_RANGE_VERSIONS} a range is "
            "resolved against; name an exact version or a dist-tag")
    best: tuple[tuple[object, ...], str] | None = None
    for ver, doc in versions.items():
        if not isinstance(doc, dict) or not test(ver):
            continue
        key = (0 if _truthy(doc.get("deprecated")) else 1, rcompare_key(ver))
        if best is None or key > best[0]:
            best = (key, ver)
    if best is None:
        raise NotFoundError(f"no version of {name} in the registry satisfies {spec}")
    how = f"highest version satisfying {spec}"
    if latest is not None and best[1] != latest:
        how += f"; latest is {latest}"
    return Picked(best[1], kind, how)


#: What analysis reads of each version document; the rest (readmes, descriptions) is dropped.
VERSION_FIELDS = ("name", "version", "main", "bin", "dist", "_npmUser", "maintainers", "scripts",
                  "dependencies", "optionalDependencies", "gitHead", "deprecated")


def slim_packument(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy holding only what release analysis needs: popular packuments shrink tenfold."""
    versions = doc.get("versions")
    return {
        "name": doc.get("name"),
        "dist-tags": doc.get("dist-tags"),
        "time": doc.get("time"),
        "versions": {
            v: {k: d[k] for k in VERSION_FIELDS if k in d}
            for v, d in (versions.items() if isinstance(versions, dict) else ())
            if isinstance(d, dict)
        },
    }
