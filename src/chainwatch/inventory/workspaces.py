"""Workspaces: a project whose root names member folders (npm and yarn ``workspaces`` in
``package.json``, pnpm's ``pnpm-workspace.yaml``). The members are the project's own packages:
their names are never registry packages, and their ``package.json`` files belong to the
root's environment, not to environments of their own."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from chainwatch.inventory import safe_yaml
from chainwatch.inventory.base import items, mapping

#: how many member folders one workspace may name (a glob like ``**`` stops there)
MAX_MEMBERS = 10_000
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


def members(root: Path) -> Workspace | None:
    """The workspace rooted at ``root``, or None when it declares none."""
    globs = patterns(root)
    if not globs:
        return None
    chosen: dict[Path, str] = {}
    excluded: set[Path] = set()
    base = root.resolve()
    for pattern in globs:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip().removeprefix("./").rstrip("/")
        if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
            continue
        try:
            matches = sorted(base.glob(pattern))
        except (ValueError, OSError):
            continue
        for folder in matches:
            if len(chosen) >= MAX_MEMBERS:
                break
            if (not folder.is_dir() or folder.is_symlink() or "node_modules" in
                    folder.relative_to(base).parts or not (folder / "package.json").is_file()):
                continue
            if negated:
                excluded.add(folder)
            elif folder != base:
                name = _manifest(folder).get("name")
                chosen[folder] = name if isinstance(name, str) else ""
    return Workspace(base, {f: n for f, n in chosen.items() if f not in excluded})


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
