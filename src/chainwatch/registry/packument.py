"""Reading what a packument says about one release."""

from __future__ import annotations

from typing import Any

from chainwatch.errors import NotFoundError
from chainwatch.model import PackageRef, Release
from chainwatch.versions import previous_versions, settled_baseline


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
    """What a release is diffed against: the newest earlier version that had settled before
    it was published (``versions.settled_baseline``), never another release of the same burst."""
    from chainwatch.analysis.metadata import parse_time

    versions = packument.get("versions")
    if not isinstance(versions, dict):
        return None
    times = packument.get("time") if isinstance(packument.get("time"), dict) else {}
    assert isinstance(times, dict)
    return settled_baseline(previous_versions(versions.keys()),
                            lambda v: parse_time(times.get(v)), version)


def latest_version(packument: dict[str, Any]) -> str:
    tags = packument.get("dist-tags")
    if isinstance(tags, dict) and isinstance(tags.get("latest"), str):
        return str(tags["latest"])
    raise NotFoundError(f"{packument.get('name', '?')} has no 'latest' dist-tag")


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
