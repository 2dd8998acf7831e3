"""Reading an installed ``node_modules`` folder from disk, under bounds, for node_modules.py.

Only package roots are read: ``node_modules/<name>`` and ``node_modules/@scope/<name>``, then
each root's own ``node_modules`` recursively, and pnpm's virtual store
(``node_modules/.pnpm/<key>/node_modules/<name>``, bun's ``.bun`` alike). Nothing else inside a
package is looked at (test fixtures, examples and nested ``package.json`` files are not packages).
A symlinked root is recorded as a link to the location it points at when that is inside the
tree, and is never followed out of it. Depth, count and bytes are bounded; a bound that leaves
something unread is a problem the caller reports (fail closed), never a silently smaller tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Nested ``node_modules`` levels below the top one (real trees stay under ~15).
MAX_DEPTH = 64
#: Package roots read in one tree (the largest real monorepos hold some 10,000).
MAX_PACKAGES = 100_000
#: A package root's ``package.json`` (name and version are all we need from it).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: The hidden lockfile npm writes at ``node_modules/.package-lock.json``.
MAX_HIDDEN_LOCK_BYTES = 64 * 1024 * 1024
HIDDEN_LOCK = ".package-lock.json"
#: Virtual stores of isolated layouts: pnpm's, and bun's (``bun install --linker isolated``).
STORES = (".pnpm", ".bun")


@dataclass
class InstalledTree:
    """What is on disk, keyed by location relative to the project (``node_modules/a``,
    ``node_modules/a/node_modules/@s/b``, ``node_modules/.pnpm/x@1/node_modules/x``)."""

    #: location -> the bytes of its package.json (None: the folder has none, or it is unreadable)
    manifests: dict[str, bytes | None] = field(default_factory=dict)
    #: location of a symlinked package root -> the location it points at inside the tree, or
    #: None when it points outside (a workspace, a ``file:`` link, or anything hostile)
    links: dict[str, str | None] = field(default_factory=dict)
    hidden_lock: bytes | None = None
    #: bounds hit and folders that could not be read: the tree is incomplete
    problems: list[str] = field(default_factory=list)


class _Reader:
    def __init__(self, modules: Path) -> None:
        self.base = modules.parent
        self.real_base = Path(os.path.realpath(modules.parent))
        self.real_modules = Path(os.path.realpath(modules))
        self.tree = InstalledTree()
        self.count = 0
        self.stopped = False

    def location(self, path: Path) -> str:
        return path.relative_to(self.base).as_posix()

    def read_modules(self, folder: Path, depth: int) -> None:
        """Every package root in one ``node_modules`` folder, then theirs."""
        if depth > MAX_DEPTH:
            self.tree.problems.append(f"{self.location(folder)}: nested deeper than {MAX_DEPTH} "
                                      "node_modules levels (not read)")
            return
        for entry in self.entries(folder):
            if entry.name.startswith("."):
                if entry.name in STORES and depth == 0 and self.is_dir(entry):
                    self.read_store(folder / entry.name)
                continue
            path = folder / entry.name
            if entry.name.startswith("@") and not entry.is_symlink() and self.is_dir(entry):
                for scoped in self.entries(path):
                    self.read_root(path / scoped.name, scoped, depth)
            else:
                self.read_root(path, entry, depth)

    def read_store(self, store: Path) -> None:
        """``.pnpm/<key>/node_modules/<name>`` (or ``.bun/…``): the real copies (the links beside them
        are their dependencies)."""
        for key in self.entries(store):
            if key.name.startswith(".") or key.name == "node_modules" or not self.is_dir(key):
                continue  # .pnpm/node_modules holds pnpm's hoisting links only
            self.read_modules(store / key.name / "node_modules", 1)

    def read_root(self, path: Path, entry: os.DirEntry[str], depth: int) -> None:
        if self.stopped:
            return
        location = self.location(path)
        if entry.is_symlink():
            self.tree.links[location] = inside = self.inside(path)
            if inside is None and (out := self.outside_project(path)) is not None:
                # Node loads whatever the link points at; a workspace or a file: link inside
                # the project is the project's own code, anything else is not inventoried here
                self.tree.problems.append(
                    f"{location}: links out of the project (to {out}); not read, though Node "
                    "would load it: inventory that folder itself")
            return
        if not self.is_dir(entry):
            return
        self.count += 1
        if self.count > MAX_PACKAGES:
            self.stopped = True
            self.tree.problems.append(f"more than {MAX_PACKAGES} installed packages: stopped "
                                      "reading (the rest is not inventoried)")
            return
        self.tree.manifests[location] = self.manifest(path / "package.json")
        nested = path / "node_modules"
        if nested.is_dir() and not nested.is_symlink():
            self.read_modules(nested, depth + 1)

    def manifest(self, path: Path) -> bytes | None:
        try:
            if path.is_symlink() or not path.is_file():
                return None
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                self.tree.problems.append(f"{self.location(path)}: larger than "
                                          f"{MAX_MANIFEST_BYTES} bytes (not read)")
                return None
            return path.read_bytes()
        except OSError as exc:
            self.tree.problems.append(f"{self.location(path)}: cannot read ({exc.strerror})")
            return None

    def inside(self, link: Path) -> str | None:
        """The location a symlink points at, when that is inside this node_modules tree."""
        try:
            target = Path(os.path.realpath(link))
        except (OSError, RuntimeError):
            return None
        if not target.is_relative_to(self.real_modules):
            return None
        return target.relative_to(self.real_base).as_posix()

    def outside_project(self, link: Path) -> str | None:
        """Where a symlink points when that is outside the project folder and outside the
        ``node_modules`` of the folders above it (a workspace's links into the workspace
        root's store are its own install), else None."""
        try:
            target = Path(os.path.realpath(link))
        except (OSError, RuntimeError):
            return "an unresolvable path"
        if target.is_relative_to(self.real_base):
            return None
        for above in list(self.real_base.parents)[:8]:
            if target.is_relative_to(above / "node_modules"):
                return None
        return str(target)[:300]

    def entries(self, folder: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as found:
                return sorted(found, key=lambda e: e.name)
        except OSError as exc:
            self.tree.problems.append(f"{self.location(folder)}: cannot read ({exc.strerror})")
            return []

    @staticmethod
    def is_dir(entry: os.DirEntry[str]) -> bool:
        try:
            return entry.is_dir(follow_symlinks=False)
        except OSError:
            return False


def read_tree(modules: Path) -> InstalledTree:
    """The package roots, links and hidden lockfile of one ``node_modules`` folder."""
    reader = _Reader(modules)
    reader.read_modules(modules, 0)
    hidden = modules / HIDDEN_LOCK
    try:
        if hidden.is_file() and not hidden.is_symlink() and (
                hidden.stat().st_size <= MAX_HIDDEN_LOCK_BYTES):
            reader.tree.hidden_lock = hidden.read_bytes()
    except OSError:
        reader.tree.hidden_lock = None  # read from the package roots instead
    return reader.tree
