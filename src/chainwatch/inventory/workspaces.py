"""Workspaces: a project whose root names member folders (npm and yarn ``workspaces`` in
``package.json``, pnpm's ``pnpm-workspace.yaml``). The members are the project's own packages:
their names are never registry packages, and their ``package.json`` files belong to the
root's environment, not to environments of their own."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from chainwatch.inventory import safe_yaml
from chainwatch.inventory.base import items, mapping

#: how many member folders one workspace may name (a glob like ``**`` stops there)
MAX_MEMBERS = 10_000
#: folders visited looking for members
MAX_VISITS = 100_000
#: a manifest or workspace file larger than this is not read for its workspaces
MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Workspace:
    root: Path
    #: member folder (resolved) → its package name ("" when it has none)
    members: dict[Path, str] = field(default_factory=dict)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n for n in self.members.values() if n)


def _read(path: Path) -> bytes | None:
    try:
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_BYTES:
            return path.read_bytes()
    except OSError:
        return None
    return None


def _manifest(folder: Path) -> dict[str, object]:
    data = _read(folder / "package.json")
    if data is None:
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def patterns(folder: Path) -> list[str]:
    """The member globs the folder's ``package.json`` (``workspaces``: a list, or yarn's
    ``{packages: [...]}``) and ``pnpm-workspace.yaml`` (``packages``) declare."""
    declared = _manifest(folder).get("workspaces")
    found = [p for p in (items(declared) or items(mapping(declared).get("packages")))
             if isinstance(p, str)]
    data = _read(folder / "pnpm-workspace.yaml")
    if data is not None:
        try:
            doc = safe_yaml.load(data.decode("utf-8", errors="replace"))
        except Exception:  # an unreadable workspace file names no members
            doc = None
        found += [p for p in items(mapping(doc).get("packages")) if isinstance(p, str)]
    return found


def _regex(pattern: str) -> re.Pattern[str]:
    """A workspace glob as a regex over a folder's path from the root: ``*`` within one
    folder name, ``**`` across any number of them."""
    out = []
    for i, part in enumerate(pattern.split("/")):
        if part == "**":
            out.append("(?:[^/]+/)*" if i < pattern.count("/") else "(?:[^/]+/)*[^/]+")
            continue
        piece = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
                        for c in part)
        out.append(piece + ("/" if i < pattern.count("/") else ""))
    return re.compile("".join(out).replace("(?:[^/]+/)*/", "(?:[^/]+/)*"))


def members(root: Path) -> Workspace | None:
    """The workspace rooted at ``root``, or None when it declares none. Folders are visited
    without following links or entering ``node_modules`` and dot-folders, no deeper than the
    globs reach, and at most MAX_VISITS of them."""
    globs = patterns(root)
    if not globs:
        return None
    wanted: list[re.Pattern[str]] = []
    unwanted: list[re.Pattern[str]] = []
    depth = 0
    for pattern in globs:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip().removeprefix("./").rstrip("/")
        if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
            continue
        (unwanted if negated else wanted).append(_regex(pattern))
        depth = max(depth, 64 if "**" in pattern else pattern.count("/") + 1)
    base = root.resolve()
    chosen: dict[Path, str] = {}
    for visits, (folder, dirs, files) in enumerate(os.walk(base, followlinks=False), 1):
        here = Path(folder)
        rel = here.relative_to(base).as_posix()
        level = 0 if rel == "." else rel.count("/") + 1
        dirs[:] = [] if level >= depth or visits > MAX_VISITS else sorted(
            d for d in dirs if d != "node_modules" and not d.startswith(".")
            and not (here / d).is_symlink())
        if (level and "package.json" in files and any(w.fullmatch(rel) for w in wanted)
                and not any(u.fullmatch(rel) for u in unwanted)):
            name = _manifest(here).get("name")
            chosen[here] = name if isinstance(name, str) else ""
            if len(chosen) >= MAX_MEMBERS:
                break
    return Workspace(base, chosen)


class Workspaces:
    """Workspace roots found at or above folders inside one walked path (never above it),
    each read once."""

    def __init__(self, top: Path) -> None:
        self.top = top.resolve()
        self._roots: dict[Path, Workspace | None] = {}

    def at(self, folder: Path) -> Workspace | None:
        folder = folder.resolve()
        if folder not in self._roots:
            self._roots[folder] = members(folder)
        return self._roots[folder]

    def containing(self, folder: Path) -> Workspace | None:
        """The workspace ``folder`` is a member of (its root above it, inside the walked path)."""
        folder = folder.resolve()
        for parent in folder.parents:
            if parent != self.top and self.top not in parent.parents:
                return None
            workspace = self.at(parent)
            if workspace is not None and folder in workspace.members:
                return workspace
        return None
