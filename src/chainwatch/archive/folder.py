"""Reading an unpacked package folder under the same limits; links are never followed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from chainwatch.archive.limits import Limits, archive_finding
from chainwatch.errors import UsageError
from chainwatch.model import Finding, PackageFile, PackageFiles, Severity

_SKIP_DIRS = {".git", "node_modules"}


def read_folder(root: Path, limits: Limits | None = None) -> PackageFiles:
    limits = limits or Limits()
    if not (root / "package.json").is_file():
        raise UsageError(f"{root}: not a package folder (no package.json)")
    files: list[PackageFile] = []
    findings: list[Finding] = []
    total = 0
    stack = [root]
    count = 0
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            findings.append(archive_finding("CW-ARCHIVE-UNREADABLE", f"cannot read: {exc}",
                                            str(folder), Severity.LOW))
            continue
        for entry in entries:
            count += 1
            rel = Path(entry.path).relative_to(root).as_posix()
            if count > limits.max_entries:
                findings.append(archive_finding(
                    "CW-ARCHIVE-LIMIT", f"more than {limits.max_entries} entries; rest not read"))
                return PackageFiles(str(root), tuple(files), tuple(findings))
            if entry.is_symlink():
                findings.append(archive_finding(
                    "CW-ARCHIVE-LINK", f"symlink to {os.readlink(entry.path)[:200]!r} (not followed)",
                    rel))
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if entry.name not in _SKIP_DIRS:
                    stack.append(Path(entry.path))
                continue
            if not stat.S_ISREG(st.st_mode):
                findings.append(archive_finding("CW-ARCHIVE-DEVICE", "special file", rel))
                continue
            if st.st_size > limits.max_file_bytes:
                findings.append(archive_finding(
                    "CW-ARCHIVE-LIMIT", f"file of {st.st_size} bytes exceeds the limit; not read",
                    rel, Severity.MEDIUM))
                continue
            total += st.st_size
            if total > limits.max_total_bytes:
                findings.append(archive_finding(
                    "CW-ARCHIVE-LIMIT", f"more than {limits.max_total_bytes} bytes; rest not read"))
                return PackageFiles(str(root), tuple(files), tuple(findings))
            try:
                with open(entry.path, "rb") as fh:
                    data = fh.read(limits.max_file_bytes)
            except OSError as exc:
                findings.append(archive_finding("CW-ARCHIVE-UNREADABLE", f"cannot read: {exc}",
                                                rel, Severity.LOW))
                continue
            files.append(PackageFile(rel, data, st.st_mode & 0o7777))
    files.sort(key=lambda f: f.path)
    return PackageFiles(str(root), tuple(files), tuple(findings))
