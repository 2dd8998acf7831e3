"""One project, one environment: a project's lockfile, its installed ``node_modules`` tree and
its pinned manifest describe the same install, so the gate judges and reports them once."""

from __future__ import annotations

from pathlib import PurePosixPath

from chainwatch.model import Environment, InstalledPackage

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
