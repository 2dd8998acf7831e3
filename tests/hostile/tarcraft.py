"""Hand-made tar blocks for hostile archives (tarfile refuses to write most of these)."""

from __future__ import annotations

import gzip


def _octal(value: int, size: int) -> bytes:
    return (format(value, "o").rjust(size - 1, "0") + "\0").encode()


def header(name: str | bytes, size: int = 0, typeflag: bytes = b"0", linkname: str = "",
           prefix: str = "", magic: bytes = b"ustar\x0000", mode: int = 0o644,
           cksum: int | None = None, size_field: bytes | None = None) -> bytes:
    """One 512-byte header; `cksum` forces a (wrong) checksum, `size_field` raw size bytes."""
    raw_name = name.encode() if isinstance(name, str) else name
    block = bytearray(512)
    block[0:100] = raw_name[:100].ljust(100, b"\0")
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(0, 8)
    block[116:124] = _octal(0, 8)
    block[124:136] = size_field if size_field is not None else _octal(size, 12)
    block[136:148] = _octal(0, 12)
    block[156:157] = typeflag
    block[157:257] = linkname.encode()[:100].ljust(100, b"\0")
    block[257:265] = magic
    block[345:500] = prefix.encode()[:155].ljust(155, b"\0")
    block[148:156] = b" " * 8
    total = sum(block) if cksum is None else cksum
    block[148:156] = format(total, "o").rjust(6, "0").encode() + b"\0 "
    return bytes(block)


def pad(body: bytes) -> bytes:
    return body + b"\0" * (-len(body) % 512)


def entry(name: str | bytes, body: bytes = b"", **kw: object) -> bytes:
    return header(name, len(body), **kw) + pad(body)  # type: ignore[arg-type]


def pax(records: dict[str, str], name: str = "PaxHeader", typeflag: bytes = b"x") -> bytes:
    body = b""
    for key, value in records.items():
        line = f" {key}={value}\n".encode()
        n = len(line)
        while len(str(n).encode()) + len(line) != n:
            n = len(str(n).encode()) + len(line)
        body += str(n).encode() + line
    return header(name, len(body), typeflag=typeflag) + pad(body)


def gnu_long(value: str, typeflag: bytes = b"L") -> bytes:
    body = value.encode() + b"\0"
    return header("././@LongLink", len(body), typeflag=typeflag, magic=b"ustar  \0") + pad(body)


ZERO = b"\0" * 512
END = ZERO * 2


def tgz(*parts: bytes) -> bytes:
    return gzip.compress(b"".join(parts), mtime=0)
