"""One project, one environment: a project's lockfile, its installed ``node_modules`` tree and
its pinned manifest describe the same install, so the gate judges and reports them once."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from chainwatch.model import Environment, InstalledPackage
from chainwatch.specs import off_registry, redact_credentials

#: kinds that describe what a project resolves (the file annotations should point at)
LOCKFILE_KINDS = ("package-lock", "pnpm", "yarn", "bun")
#: kinds that describe the same project without being its lockfile
FOLDS_INTO = ("node_modules", "package.json")


def project_of(env: Environment) -> str | None:
    """The project folder an environment belongs to; None for those that stand alone
    (SBOMs, images)."""
    if env.kind not in (*LOCKFILE_KINDS, *FOLDS_INTO):
        return None
    parts = PurePosixPath(env.source.replace("\\", "/")).parts
    if "node_modules" in parts:
        return str(PurePosixPath(*parts[:parts.index("node_modules")] or ("",)))
    return str(PurePosixPath(env.source.replace("\\", "/")).parent)


def merge_projects(envs: list[Environment]) -> list[Environment]:
    """Fold each project's node_modules and manifest into its lockfile (or, without one, the
    manifest into node_modules). Packages only the folded ones list are kept, so nothing
    installed escapes the gate; a package version both list is one entry."""
    groups: dict[str, list[Environment]] = {}
    for env in envs:
        if (project := project_of(env)) is not None:
            groups.setdefault(project, []).append(env)
    folded: dict[int, Environment] = {}
    dropped: set[int] = set()
    for members in groups.values():
        primary = next((e for e in members if e.kind in LOCKFILE_KINDS),
                       next((e for e in members if e.kind == "node_modules"), None))
        if primary is None:
            continue
        others = [e for e in members if e is not primary and e.kind in FOLDS_INTO]
        if not others:
            continue
        seen = {(p.name, p.version) for p in primary.packages}
        extra: list[InstalledPackage] = []
        for other in others:
            for package in other.packages:
                if package.exact and (package.name, package.version) not in seen:
                    seen.add((package.name, package.version))
                    extra.append(package)
            dropped.add(id(other))
        folded[id(primary)] = Environment(
            primary.id, primary.kind, primary.source, (*primary.packages, *extra),
            (*primary.errors, *(e for o in others for e in o.errors)))
    return [folded.get(id(e), e) for e in envs if id(e) not in dropped]


#: specifiers of packages that come from the project itself, never from a registry
LOCAL_PROTOCOLS = ("file:", "link:", "workspace:", "portal:")


def is_local(package: InstalledPackage) -> bool:
    """A ``file:``, ``link:``, ``workspace:`` or ``portal:`` package (by its version or where it
    was resolved from): the registry knows nothing true about it, so it is never asked."""
    return any(isinstance(value, str) and value.startswith(LOCAL_PROTOCOLS)
               for value in (package.version, package.resolved))


#: hosts whose tarballs are the public registry's own releases (npm writes them into lockfiles
#: and rewrites them to the configured registry at install; yarn writes its mirror)
REGISTRY_HOSTS = frozenset({"registry.npmjs.org", "registry.npmjs.com", "registry.yarnpkg.com"})


def registry_hosts(registries: Iterable[str]) -> frozenset[str]:
    """The public registry's hosts and those of the configured registries (``registry`` and
    the scoped ones): a tarball from any of them is a registry release."""
    hosts = {urlsplit(r).hostname for r in registries if isinstance(r, str)}
    return REGISTRY_HOSTS | {h.lower() for h in hosts if h}


def _absolute(path: str) -> bool:
    path = path.replace("\\", "/")
    return path.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", path) is not None


def _outside(path: str) -> bool:
    """Whether a ``file:`` path (relative to the lockfile's folder) leaves the project."""
    path = path.replace("\\", "/")
    if path.startswith("//"):  # file://… URL form
        path = path[2:]
    if _absolute(path):
        return True
    normal = posixpath.normpath(path or ".")
    return normal == ".." or normal.startswith("../")


def off_registry_source(package: InstalledPackage, hosts: frozenset[str]) -> str | None:
    """Where a package was installed from when that is not a registry (credentials redacted:
    this is shown), else None: a tarball URL on another host, git, a GitHub shorthand, or a
    local file or link outside the project. npm installs those bytes, not the registry's
    release of the same name and version, so the registry's word about them means nothing."""
    for value in (package.resolved, package.version):
        if not isinstance(value, str) or not value.strip():
            continue
        text = value.strip()
        lowered = text.lower()
        if lowered.startswith(("file:", "link:", "portal:")):
            # ``file:`` is relative to the lockfile's folder; ``link:``/``portal:`` to the
            # importer's (a workspace anywhere below it), so only an absolute one is known
            # to leave the project
            path = text.split(":", 1)[1]
            if _outside(path) if lowered.startswith("file:") else _absolute(path):
                return redact_credentials(text)[:200]
            continue
        if lowered.startswith(("workspace:", "npm:")):
            continue
        if lowered.startswith(("http://", "https://")):
            try:
                host = (urlsplit(text).hostname or "").lower()
            except ValueError:
                host = ""
            if host in hosts:
                continue
            return redact_credentials(text)[:200]
        if (where := off_registry(text)) is not None:
            return where
    return None
