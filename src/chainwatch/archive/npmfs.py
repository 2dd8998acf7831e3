"""Where npm writes each tar entry: pacote's filter, node-tar's `strip: 1` and path checks, and
the folder the entries build up (later duplicates win; a file under a file, or over a folder,
fails as it does on disk). Pure string work: nothing touches the file system.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from chainwatch.archive.nodetar import Entry

MAX_DEPTH = 1024  # node-tar's default maxDepth
#: Names we do not follow exactly: lengths the file system refuses depend on npm's folder.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
MAX_SCAN_CHARS = 4096
_DRIVE = re.compile(r"[A-Za-z]:")
FILE_TYPES = ("File", "OldFile", "ContiguousFile")


@dataclass
class Placement:
    """The outcome for one entry: a path written, or why not (problem, and if unmirrorable)."""

    path: str | None
    problem: str | None = None
    unsafe: bool = False
    unmirrorable: bool = False


def _strip_root(path: str) -> tuple[str, str | None]:
    """node-tar's stripAbsolutePath for the roots we mirror; returns (path, unmirrorable).

    The second value is None when nothing was stripped, "" when a root was, or the reason
    we do not follow this path. Linear: it moves an index, never re-slices in a loop.
    """
    if len(path) > MAX_SCAN_CHARS:
        return path, "a name longer than npm's file system could take"
    i = 0
    while True:
        if path.startswith("//?/", i) or path.startswith("\\", i):
            return path, "a Windows UNC or device root"
        if path.startswith("/", i):
            i += 1
        elif _DRIVE.match(path, i):
            i += 3 if path[i + 2 : i + 3] in ("/", "\\") else 2
        else:
            return path[i:], ("" if i else None)


@dataclass
class NpmFolder:
    """The folder npm extracts into, as path -> entry (files) and a set of implied folders."""

    files: dict[str, Entry] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    _npmignores: set[str] = field(default_factory=set)

    def accept(self, entry: Entry) -> Placement | None:
        """pacote's filter: links and everything but regular files are skipped (None)."""
        if entry.type.endswith("Link"):
            return Placement(None, f"{entry.type.lower()} to {(entry.linkpath or '')[:200]!r} "
                                   "(npm skips links)")
        if entry.type not in FILE_TYPES:
            return None
        base = posixpath.basename(entry.path.rstrip("/")) if entry.path.strip("/") else ""
        if base == ".npmignore":
            self._npmignores.add(entry.path)
        elif base == ".gitignore":
            renamed = re.sub(r"\.gitignore\Z", ".npmignore", entry.path)
            if renamed in self._npmignores:
                return Placement(None, ".gitignore after .npmignore (npm skips it)")
            entry.path = renamed
        return self._place(entry)

    def _place(self, entry: Entry) -> Placement:
        parts = entry.path.split("/")[1:]
        if len(parts) > MAX_DEPTH:
            return Placement(None, "path deeper than npm extracts", unsafe=True)
        rel = "/".join(parts)
        rel, root = _strip_root(rel)
        if root:
            return Placement(None, f"entry under {root}", unmirrorable=True)
        if ".." in rel.replace("\\", "/").split("/"):
            return Placement(None, "path traversal (..), npm skips it", unsafe=True)
        if entry.linkpath:
            link, link_root = _strip_root(entry.linkpath)
            if link_root:
                return Placement(None, f"link path under {link_root}", unmirrorable=True)
            lparts = link.replace("\\", "/").split("/")
            if ".." in lparts:
                joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), *lparts))
                if joined == ".." or joined.startswith("../"):
                    return Placement(None, "link path escapes the package, npm skips it",
                                     unsafe=True)
        if "\0" in rel:
            return Placement(None, "NUL in the path (node-tar throws; npm crashes)",
                             unmirrorable=True)
        norm = posixpath.normpath("/" + rel).lstrip("/")  # path.resolve(cwd, rel)
        if not norm:
            return Placement(None, "entry outside any package folder; npm does not write it")
        encoded = norm.encode("utf-8", errors="surrogatepass")
        if len(encoded) > MAX_PATH_BYTES or any(len(p) > MAX_NAME_BYTES
                                                for p in encoded.split(b"/")):
            return Placement(None, "name too long to predict what npm writes", unmirrorable=True)
        comps = norm.split("/")
        ancestors = ["/".join(comps[:i]) for i in range(1, len(comps))]
        for folder in ancestors:
            if folder in self.files:
                return Placement(None, f"{folder!r} is a file; npm cannot write below it")
        if norm in self.dirs:
            return Placement(None, f"{norm!r} is a folder; npm cannot replace it with a file")
        self.dirs.update(ancestors)
        self.files[norm] = entry
        return Placement(norm)
