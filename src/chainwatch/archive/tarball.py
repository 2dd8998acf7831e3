"""Safe, in-memory reading of an npm tarball (.tgz)."""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
import zlib

from chainwatch.archive.limits import Limits, archive_finding
from chainwatch.errors import UnsafeArchiveError
from chainwatch.model import Finding, PackageFile, PackageFiles, Severity

_CHUNK = 1 << 16


def _gunzip_bounded(data: bytes, limits: Limits) -> tuple[bytes, Finding | None]:
    """Decompress gzip (or pass plain tar through) without exceeding the limits."""
    if data[:2] != b"\x1f\x8b":
        return data, None
    inflater = zlib.decompressobj(wbits=47)
    out = bytearray()
    view = memoryview(data)
    pos = 0
    while pos < len(view) or inflater.unconsumed_tail:
        if inflater.unconsumed_tail:
            piece = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
        else:
            piece = inflater.decompress(view[pos : pos + _CHUNK], _CHUNK)
            pos += _CHUNK
        out += piece
        if len(out) > limits.max_total_bytes:
            return bytes(out[: limits.max_total_bytes]), archive_finding(
                "CW-ARCHIVE-BOMB",
                f"archive unpacks to more than {limits.max_total_bytes} bytes; reading stopped",
                severity=Severity.CRITICAL,
            )
        if len(out) > limits.ratio_floor_bytes and len(out) > limits.max_ratio * max(pos, 1):
            return bytes(out), archive_finding(
                "CW-ARCHIVE-BOMB",
                f"compression ratio above {limits.max_ratio:.0f}:1 (decompression bomb); "
                "reading stopped",
                severity=Severity.CRITICAL,
            )
        if inflater.eof:
            break
    return bytes(out), None


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
    try:
        raw, bomb = _gunzip_bounded(data, limits)
    except zlib.error as exc:
        raise UnsafeArchiveError(f"{source}: not a readable gzip archive ({exc})") from exc
    findings: list[Finding] = [bomb] if bomb else []
    files: list[PackageFile] = []
    seen: set[str] = set()
    total = 0
    try:
        archive = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")  # noqa: SIM115 (in memory)
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"{source}: not a readable tar archive ({exc})") from exc
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
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        findings.append(archive_finding(
            "CW-ARCHIVE-CORRUPT", f"archive is truncated or corrupt after {count} entries: {exc}",
            severity=Severity.MEDIUM))
    if not files and not findings:
        raise UnsafeArchiveError(f"{source}: the archive holds no files")
    return PackageFiles(source=source, files=tuple(files), findings=tuple(findings), sha512=sha512)
