"""Safe, in-memory reading of an npm tarball (.tgz)."""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

from chainwatch.archive.limits import Limits, archive_finding
from chainwatch.errors import UnsafeArchiveError
from chainwatch.model import Finding, PackageFile, PackageFiles, Severity

_CHUNK = 1 << 16


class _LimitExceeded(Exception):
    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


class _BoundedInflater(io.RawIOBase):
    """A read-only stream of the decompressed tar, checking size and ratio as it goes.

    tarfile reads it sequentially (stream mode), so the whole tar is never held in memory.
    """

    def __init__(self, data: bytes, limits: Limits) -> None:
        self._view = memoryview(data)
        self._pos = 0
        self._limits = limits
        self._out = 0
        self._gzip = data[:2] == b"\x1f\x8b"
        self._inflater = zlib.decompressobj(wbits=47) if self._gzip else None
        self._pending = b""

    def readable(self) -> bool:
        return True

    def _more(self, size: int) -> bytes:
        if self._inflater is None:
            piece = bytes(self._view[self._pos : self._pos + size])
            self._pos += len(piece)
            return piece
        while True:
            if self._inflater.eof:
                return b""
            if self._inflater.unconsumed_tail:
                piece = self._inflater.decompress(self._inflater.unconsumed_tail, size)
            elif self._pos < len(self._view):
                chunk = self._view[self._pos : self._pos + _CHUNK]
                self._pos += len(chunk)
                piece = self._inflater.decompress(chunk, size)
            else:
                return b""
            if piece:
                return piece

    def readinto(self, buffer: WriteableBuffer) -> int:
        target = memoryview(buffer).cast("B")
        if not self._pending:
            self._pending = self._more(max(len(target), _CHUNK))
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._out += n
        limits = self._limits
        if self._out > limits.max_total_bytes:
            raise _LimitExceeded(archive_finding(
                "CW-ARCHIVE-BOMB",
                f"archive unpacks to more than {limits.max_total_bytes} bytes; reading stopped",
                severity=Severity.CRITICAL))
        if (self._gzip and self._out > limits.ratio_floor_bytes
                and self._out > limits.max_ratio * max(self._pos, 1)):
            raise _LimitExceeded(archive_finding(
                "CW-ARCHIVE-BOMB",
                f"compression ratio above {limits.max_ratio:.0f}:1 (decompression bomb); "
                "reading stopped", severity=Severity.CRITICAL))
        return n


def _package_path(name: str) -> tuple[str | None, str | None]:
    """Strip npm's first path component; return (path, problem)."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        return None, "absolute path"
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, "path traversal (..)"
    if len(parts) < 2:
        return (parts[0] if parts else None), None
    return posixpath.join(*parts[1:]), None


def read_tarball(data: bytes, source: str = "<tarball>", limits: Limits | None = None) -> PackageFiles:
    """Read a package tarball in memory. Unsafe entries become findings and are skipped."""
    limits = limits or Limits()
    sha512 = hashlib.sha512(data).hexdigest()
    findings: list[Finding] = []
    files: list[PackageFile] = []
    seen: set[str] = set()
    total = 0
    stream = io.BufferedReader(_BoundedInflater(data, limits), buffer_size=_CHUNK)
    try:
        archive = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 (in memory)
    except (tarfile.TarError, zlib.error, EOFError) as exc:
        raise UnsafeArchiveError(f"{source}: not a readable package archive ({exc})") from exc
    except _LimitExceeded as exc:
        raise UnsafeArchiveError(f"{source}: {exc}") from exc
    count = 0
    try:
        for member in archive:
            count += 1
            if count > limits.max_entries:
                findings.append(archive_finding(
                    "CW-ARCHIVE-LIMIT", f"more than {limits.max_entries} entries; rest not read"))
                break
            path, problem = _package_path(member.name)
            shown = member.name[:200]
            if problem:
                findings.append(archive_finding(
                    "CW-ARCHIVE-UNSAFE-PATH", f"entry with {problem}: {shown!r}", shown,
                    Severity.CRITICAL))
                continue
            if member.issym() or member.islnk():
                kind = "symlink" if member.issym() else "hard link"
                findings.append(archive_finding(
                    "CW-ARCHIVE-LINK",
                    f"{kind} to {member.linkname[:200]!r} (not followed)", path))
                continue
            if member.isdir() or member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
                continue
            if not member.isreg():
                findings.append(archive_finding(
                    "CW-ARCHIVE-DEVICE", f"special entry (device or fifo): {shown!r}", path))
                continue
            if path is None:
                continue
            if member.size > limits.max_file_bytes:
                findings.append(archive_finding(
                    "CW-ARCHIVE-LIMIT",
                    f"file of {member.size} bytes exceeds {limits.max_file_bytes}; not read",
                    path, Severity.MEDIUM))
                continue
            total += member.size
            if total > limits.max_total_bytes:
                findings.append(archive_finding(
                    "CW-ARCHIVE-LIMIT", f"more than {limits.max_total_bytes} bytes; rest not read"))
                break
            handle = archive.extractfile(member)
            if handle is None:
                continue
            content = handle.read(limits.max_file_bytes)
            if path in seen:
                findings.append(archive_finding(
                    "CW-ARCHIVE-DUPLICATE", "entry appears twice; the last copy is used", path,
                    Severity.MEDIUM))
                files = [f for f in files if f.path != path]
            seen.add(path)
            files.append(PackageFile(path, content, member.mode & 0o7777))
    except _LimitExceeded as exc:
        findings.append(exc.finding)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        findings.append(archive_finding(
            "CW-ARCHIVE-CORRUPT", f"archive is truncated or corrupt after {count} entries: {exc}",
            severity=Severity.MEDIUM))
    if not files and not findings:
        raise UnsafeArchiveError(f"{source}: the archive holds no files")
    return PackageFiles(source=source, files=tuple(files), findings=tuple(findings), sha512=sha512)
