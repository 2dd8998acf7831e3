"""Safe, in-memory reading of an npm tarball (.tgz): exactly the files npm would write.

The reading mirrors npm (pacote -> node-tar `x` with `strip: 1`): every gzip member
(`inflate`), node-tar's header parsing (`nodetar`) and where each entry lands (`npmfs`).
What we cannot read the way npm does, or a limit that leaves a file unread, is a CRITICAL
finding, so the release is blocked rather than passed on a partial view.
"""

from __future__ import annotations

import hashlib

from chainwatch.archive.inflate import InflateProblem, tar_stream
from chainwatch.archive.limits import Limits, archive_finding
from chainwatch.archive.nodetar import HEADER_LIMIT, Entry, Unmirrorable, entries
from chainwatch.archive.npmfs import NpmFolder
from chainwatch.errors import UnsafeArchiveError
from chainwatch.model import Finding, PackageFile, PackageFiles, Severity

_MAX_WARNINGS = 20  # distinct node-tar warnings reported per archive; the rest are counted


def _raw_path_problem(name: str) -> str | None:
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        return "absolute path"
    if ".." in raw.split("/"):
        return "path traversal (..)"
    return None


def _max_headers(limits: Limits) -> int:
    """Headers of any kind we look at: entries, plus room for pax/GNU records and invalid ones."""
    return 3 * limits.max_entries + 1000


class _Reader:
    def __init__(self, source: str, limits: Limits) -> None:
        self.source = source
        self.limits = limits
        self.findings: list[Finding] = []
        self.folder = NpmFolder()
        self.total = 0
        self.count = 0
        self.invalid = 0
        self.duplicates = 0

    def critical(self, rule: str, message: str, path: str | None = None) -> None:
        self.findings.append(archive_finding(rule, message, path, Severity.CRITICAL))

    def entry(self, entry: Entry) -> bool:
        """Handle one entry; False stops reading."""
        self.count += 1
        limits = self.limits
        if self.count > limits.max_entries:
            self.critical("CW-ARCHIVE-LIMIT",
                          f"more than {limits.max_entries} entries; rest not read")
            return False
        shown = entry.path[:200]
        problem = _raw_path_problem(entry.path)
        if problem:
            self.critical("CW-ARCHIVE-UNSAFE-PATH", f"entry with {problem}: {shown!r}", shown)
        if entry.type in ("CharacterDevice", "BlockDevice", "FIFO"):
            self.findings.append(archive_finding(
                "CW-ARCHIVE-DEVICE", f"special entry (device or fifo): {shown!r}", shown))
        if entry.truncated:
            self.critical("CW-ARCHIVE-CORRUPT",
                          "archive is truncated inside an entry; what npm writes then depends "
                          "on how its reads are chunked", shown)
        if entry.oversize:
            self.critical("CW-ARCHIVE-LIMIT",
                          f"file of {entry.size} bytes exceeds {limits.max_file_bytes}; not read",
                          shown)
            return True
        before = len(self.folder.files)
        replaced = None
        placement = self.folder.accept(entry)
        if placement is None:
            return True
        if placement.path is None:
            if entry.type.endswith("Link"):
                self.findings.append(archive_finding(
                    "CW-ARCHIVE-LINK", f"{placement.problem} (not followed)", shown))
            elif placement.unmirrorable:
                self.critical("CW-ARCHIVE-UNREADABLE",
                              f"cannot tell what npm writes for {shown!r}: {placement.problem}",
                              shown)
            elif placement.unsafe:
                if not problem:
                    self.critical("CW-ARCHIVE-UNSAFE-PATH", f"{placement.problem}: {shown!r}",
                                  shown)
            elif placement.problem:
                self.findings.append(archive_finding(
                    "CW-ARCHIVE-SKIPPED", f"{shown!r}: {placement.problem}", shown,
                    Severity.MEDIUM))
            return True
        if len(self.folder.files) == before:
            replaced = placement.path
        if replaced is not None:
            self.duplicates += 1
            if self.duplicates <= _MAX_WARNINGS:
                self.findings.append(archive_finding(
                    "CW-ARCHIVE-DUPLICATE", "entry appears twice; the last copy is used (as npm)",
                    replaced, Severity.MEDIUM))
        self.total += entry.size
        if self.total > limits.max_total_bytes:
            self.critical("CW-ARCHIVE-LIMIT", f"more than {limits.max_total_bytes} bytes; "
                          "rest not read")
            return False
        return True

    def warn(self, warning: str) -> None:
        if warning == HEADER_LIMIT:
            self.critical("CW-ARCHIVE-LIMIT", f"more than {_max_headers(self.limits)} tar "
                          "headers (entries, pax records, invalid headers); rest not read")
            return
        if warning.startswith("TAR_BAD_ARCHIVE"):
            self.critical("CW-ARCHIVE-CORRUPT", f"{warning}: npm's extraction fails on this "
                          "archive, and what it leaves behind depends on timing")
            return
        self.invalid += 1
        if self.invalid <= _MAX_WARNINGS:
            self.findings.append(archive_finding(
                "CW-ARCHIVE-INVALID-HEADER",
                f"{warning}: Python's tar readers stop here, npm reads on "
                "(the entries after it were analysed too)"))

    def finish(self, sha512: str) -> PackageFiles:
        if self.invalid > _MAX_WARNINGS:
            self.findings.append(archive_finding(
                "CW-ARCHIVE-INVALID-HEADER", f"{self.invalid - _MAX_WARNINGS} more invalid tar headers"))
        if self.duplicates > _MAX_WARNINGS:
            self.findings.append(archive_finding(
                "CW-ARCHIVE-DUPLICATE", f"{self.duplicates - _MAX_WARNINGS} more duplicate entries",
                severity=Severity.MEDIUM))
        files = tuple(
            PackageFile(path, entry.body, (entry.mode or 0o644) & 0o7777)
            for path, entry in sorted(self.folder.files.items()))
        if not files and not self.findings:
            raise UnsafeArchiveError(f"{self.source}: the archive holds no files")
        if not files and all(f.rule == "CW-ARCHIVE-INVALID-HEADER" for f in self.findings):
            # not one valid tar header: npm cannot install it, and there is nothing to judge
            raise UnsafeArchiveError(f"{self.source}: not a readable package archive "
                                     f"(no valid tar entry: {self.findings[0].message})")
        return PackageFiles(source=self.source, files=files, findings=tuple(self.findings),
                            sha512=sha512)


def read_tarball(data: bytes, source: str = "<tarball>", limits: Limits | None = None) -> PackageFiles:
    """Read a package tarball in memory: the (path, content) set npm would write.

    Unsafe or unreadable entries become findings; nothing is ever written or followed.
    """
    limits = limits or Limits()
    sha512 = hashlib.sha512(data).hexdigest()
    reader = _Reader(source, limits)
    stream = tar_stream(data, limits)
    try:
        for item in entries(stream, limits.max_file_bytes, _max_headers(limits)):
            if isinstance(item, str):
                reader.warn(item)
            elif not reader.entry(item):
                break
        else:
            # node-tar stops parsing at the end marker, but zlib still decodes the rest and
            # npm aborts on an error there: decode it too (bounded by the same limits).
            for _ in stream:
                pass
    except InflateProblem as exc:
        if not reader.folder.files and not exc.bomb:
            raise UnsafeArchiveError(f"{source}: not a readable package archive ({exc})") from exc
        reader.critical("CW-ARCHIVE-BOMB" if exc.bomb else "CW-ARCHIVE-CORRUPT",
                        f"{exc}; reading stopped")
    except Unmirrorable as exc:
        reader.critical("CW-ARCHIVE-UNREADABLE", f"cannot tell what npm writes: {exc}")
    return reader.finish(sha512)
