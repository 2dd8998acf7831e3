"""A tar parser that reads headers the way node-tar 7 (bundled in npm) does.

Python's tarfile stops at the first zero block or bad checksum; node-tar warns and goes on, so
a payload placed after one is installed by npm and was never seen by chainwatch. This module
follows node-tar's `Parser`, `Header`, `Pax` and `ReadEntry` (dist/commonjs/*.js): one zero
block is skipped (two end the archive), a header that fails to decode or has a bad checksum
skips only its own 512 bytes (its "body" is read as headers), pax `x`/`g` and GNU `L`/`K`
records apply to the next entry exactly as node-tar applies them, and a truncated body keeps
what is there. It yields entries; what npm then writes (strip, filters, the file system) is
`npmfs`'s job. Everything is bounded: meta records by node-tar's 1 MiB, bodies by the caller.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

BLOCK = 512
MAX_META = 1024 * 1024  # node-tar's maxMetaEntrySize

TYPE_NAMES = {
    "0": "File", "": "OldFile", "1": "Link", "2": "SymbolicLink", "3": "CharacterDevice",
    "4": "BlockDevice", "5": "Directory", "6": "FIFO", "7": "ContiguousFile",
    "g": "GlobalExtendedHeader", "x": "ExtendedHeader", "A": "SolarisACL", "D": "GNUDumpDir",
    "I": "Inode", "K": "NextFileHasLongLinkpath", "L": "NextFileHasLongPath",
    "M": "ContinuationFile", "N": "OldGnuLongPath", "S": "SparseFile", "V": "TapeVolumeHeader",
    "X": "OldExtendedHeader",
}
_NORMAL_FS = {"0", "", "1", "2", "3", "4", "5", "6", "7", "D"}
_KINDS = {"File", "OldFile", "Link", "SymbolicLink", "CharacterDevice", "BlockDevice",
          "Directory", "FIFO", "ContiguousFile", "GNUDumpDir"}
_META = {"NextFileHasLongLinkpath", "NextFileHasLongPath", "OldGnuLongPath",
         "GlobalExtendedHeader", "ExtendedHeader", "OldExtendedHeader"}
# JavaScript's `.` does not match line terminators; `/\0.*/` cuts only to the next one.
_JS_NUL_CUT = re.compile("\x00[^\n\r\u2028\u2029]*")
_JS_NUL_CUT_END = re.compile("\x00[^\n\r\u2028\u2029]*\\Z")
_JS_WS = ("\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
          "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
_MAX_DIGITS = 40
_HUGE = 10**40
_JS_OCT = re.compile(r"([+-]?)([0-7]+)")
_JS_DEC = re.compile(r"([+-]?)([0-9]+)")
_FAST_OCT = re.compile(rb"[\t\n\v\f\r ]*([+-]?)([0-7]+)")
_DECIMAL = re.compile(r"[0-9]+")
#: Pax keys node-tar keeps (the `Pax` constructor drops mode, type, ...).
_PAX_KEYS = {"atime", "charset", "comment", "ctime", "dev", "gid", "gname", "ino", "linkpath",
             "mtime", "nlink", "path", "size", "uid", "uname"}


TRUNCATED = "TAR_BAD_ARCHIVE: truncated input"
HEADER_LIMIT = "LIMIT: too many tar headers"


class Unmirrorable(Exception):
    """Something node-tar would read in a way we do not reproduce exactly."""


def _cut_nul(text: str) -> str:
    return _JS_NUL_CUT.sub("", text, count=1)


def _dec_string(block: bytes, off: int, size: int) -> str:
    raw = block[off : off + size]
    if raw.isascii() and b"\n" not in raw and b"\r" not in raw:
        return raw.split(b"\0", 1)[0].decode("ascii")  # the common case, same result
    return _cut_nul(raw.decode("utf-8", errors="replace"))


def _js_parse_int(text: str, radix: int) -> int | None:
    """JavaScript parseInt for radix 8 or 10: leading space, a sign, then digits."""
    match = (_JS_OCT if radix == 8 else _JS_DEC).match(text.lstrip(_JS_WS))
    if match is None:
        return None
    digits = match.group(2)
    if len(digits) > _MAX_DIGITS:
        return _HUGE  # beyond anything we compare with (and beyond int()'s digit limit)
    value = int(digits, radix)
    return -value if match.group(1) == "-" else value


class _BadHeader(Exception):
    pass


def _dec_number(block: bytes, off: int, size: int) -> int | None:
    raw = block[off : off + size]
    if raw[0] & 0x80:
        if raw[0] == 0x80:
            value = int.from_bytes(raw[1:], "big")
        elif raw[0] == 0xFF:
            value = int.from_bytes(raw, "big", signed=True)
        else:
            raise _BadHeader("invalid base256 encoding")
        if abs(value) > 2**53 - 1:
            raise _BadHeader("number outside the safe integer range")
        return value
    if raw.isascii() and b"\n" not in raw and b"\r" not in raw:
        # the common case, same result: cut at the first NUL, then parseInt
        match = _FAST_OCT.match(raw.split(b"\0", 1)[0])
        if match is None:
            return None
        value = int(match.group(2), 8)
        return -value if match.group(1) == b"-" else value
    text = _JS_NUL_CUT_END.sub("", raw.decode("utf-8", errors="replace"), count=1)
    return _js_parse_int(text.strip(_JS_WS), 8)


def _check_number(block: bytes, off: int, size: int) -> None:
    """Decode a number whose value we do not use, only for the errors node-tar throws."""
    if block[off] & 0x80:
        _dec_number(block, off, size)


Pax = dict[str, Any]


def _never(key: str, *sources: Pax | None) -> bool:
    return False


def _byte_sum(block: bytes) -> int:
    """sum(block[:148]) + sum(block[156:512]), fast: adler32's low half is the byte sum
    modulo 65521, exact for pieces of at most 256 bytes."""
    return ((zlib.adler32(block[0:148], 0) & 0xFFFF) + (zlib.adler32(block[156:412], 0) & 0xFFFF)
            + (zlib.adler32(block[412:512], 0) & 0xFFFF))


@dataclass
class Header:
    path: str
    typeflag: str  # the key ('0', '5', ...) or 'Unsupported'
    size: int
    linkpath: str
    mode: int | None
    cksum_valid: bool
    null_block: bool

    @property
    def type(self) -> str:
        return TYPE_NAMES.get(self.typeflag, "Unsupported")


def decode_header(block: bytes, ex: Pax | None, gex: Pax | None) -> Header:
    """node-tar's Header.decode; raises _BadHeader where it throws."""
    t = _dec_string(block, 156, 1)
    normal = t in _NORMAL_FS
    exf = ex if normal else None
    gexf = gex if normal else None

    def given(key: str, *sources: Pax | None) -> bool:
        return any(src is not None and src.get(key) is not None for src in sources)

    if exf is None and gexf is None and ex is None and gex is None:
        given = _never  # the common case: no pending records

    path = exf["path"] if exf is not None and exf.get("path") is not None else \
        _dec_string(block, 0, 100)
    mode = _dec_number(block, 100, 8)  # pax records never carry a mode (node's Pax drops it)
    for key, off, width in (("uid", 108, 8), ("gid", 116, 8)):
        if not given(key, exf, gexf):
            _check_number(block, off, width)
    size: int | None
    if given("size", exf):
        size = exf["size"]  # type: ignore[index]
    elif given("size", gexf):
        size = gexf["size"]  # type: ignore[index]
    else:
        size = _dec_number(block, 124, 12)
    if size is not None and size < 0:
        size = None
    if not given("mtime", exf, gexf):
        _check_number(block, 136, 12)
    cksum = _dec_number(block, 148, 12)
    for src in (gexf, exf):  # slurp: global first, then the local header wins
        if src is None:
            continue
        if src.get("size") is not None and src["size"] >= 0:
            size = src["size"]
        if src is exf and src.get("path") is not None:
            path = src["path"]
    typeflag = (t or "0") if t in TYPE_NAMES else "Unsupported"  # node: `t || '0'`
    if typeflag == "0" and path.endswith("/"):
        typeflag = "5"
    if typeflag == "5":
        size = 0
    linkpath = _dec_string(block, 157, 100)
    if block[257:265] == b"ustar\x0000":
        _check_number(block, 329, 8)  # devmaj, devmin: never from pax
        _check_number(block, 337, 8)
        if block[475] != 0:
            path = _dec_string(block, 345, 155) + "/" + path
        else:
            prefix = _dec_string(block, 345, 130)
            if prefix:
                path = prefix + "/" + path
            for key, off in (("atime", 476), ("ctime", 488)):
                if not given(key, ex, gex):
                    _check_number(block, off, 12)
    total = 8 * 0x20 + _byte_sum(block)
    return Header(path=path, typeflag=typeflag, size=size or 0, linkpath=linkpath,
                  mode=mode if isinstance(mode, int) else None,
                  cksum_valid=total == cksum, null_block=cksum is None and total == 8 * 0x20)


def parse_pax(text: str, prev: Pax | None, is_global: bool) -> Pax:
    """node-tar's Pax.parse: later keys win over the pending record's."""
    parsed: Pax = {}
    if text.endswith("\n"):
        text = text[:-1]
    for line in text.split("\n"):
        n = _js_parse_int(line, 10)
        if n is None or n != len(line.encode("utf-8", errors="surrogatepass")) + 1:
            continue
        rest = line[len(str(n)) + 1 :]
        key, _, value = rest.partition("=")
        if not key:
            continue
        key = re.sub(r"^SCHILY\.(dev|ino|nlink)", r"\1", key)
        value = _cut_nul(value)
        if key in ("path", "linkpath", "charset", "comment", "gname", "uname"):
            parsed[key] = value
        elif key == "size":
            stripped = value.strip(_JS_WS)
            if stripped and not (_DECIMAL.fullmatch(stripped) and len(stripped) <= 15):
                raise Unmirrorable(f"pax size {value[:40]!r} is not a plain decimal number "
                                   "below 10^15")
            parsed[key] = int(stripped) if stripped else 0
        elif key in ("ctime", "atime", "mtime", "gid", "uid", "dev", "ino", "nlink"):
            parsed[key] = value  # only their presence matters here
    merged = {**(prev or {}), **parsed}
    return {k: v for k, v in merged.items() if k in _PAX_KEYS} | {"global": is_global}


@dataclass
class Entry:
    """One entry node-tar hands on (after meta records were applied)."""

    path: str
    type: str
    size: int
    linkpath: str | None
    mode: int | None
    body: bytes = b""
    truncated: bool = False
    #: Set when the body was longer than the caller's bound (body not kept).
    oversize: bool = False
    warnings: list[str] = field(default_factory=list)


class _Blocks:
    """Sequential access to the decompressed stream, holding at most one chunk plus a body."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = bytearray()
        self._pos = 0
        self.eof = False

    def _fill(self, n: int) -> None:
        while len(self._buf) - self._pos < n and not self.eof:
            piece = next(self._chunks, None)
            if piece is None:
                self.eof = True
                break
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            self._buf += piece

    def read(self, n: int) -> bytes:
        self._fill(n)
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += len(out)
        return out

    def skip(self, n: int) -> int:
        done = 0
        while done < n:
            got = len(self.read(min(n - done, 1 << 20)))
            if not got:
                break
            done += got
        return done


def entries(chunks: Iterable[bytes], max_body: int, max_headers: int) -> Iterator[Entry | str]:
    """Yield entries (and warning strings) as node-tar's Parser emits them.

    At most `max_headers` non-zero header blocks (entries, meta records, invalid headers) are
    looked at; then HEADER_LIMIT is yielded and reading stops.
    """
    blocks = _Blocks(chunks)
    ex: Pax | None = None
    gex: Pax | None = None
    saw_null = False
    # A meta record whose size node-tar takes as 0 leaves its body unread but still "open":
    # if no later header replaces it, node-tar reports truncated input and npm fails.
    dangling = False
    headers = 0
    while True:
        block = blocks.read(BLOCK)
        if len(block) < BLOCK:
            if dangling:
                yield TRUNCATED
            return  # node-tar ignores a partial trailing block
        headers += 1
        if headers > max_headers:
            yield HEADER_LIMIT
            return
        try:
            header = decode_header(block, ex, gex)
        except _BadHeader as exc:
            yield f"TAR_ENTRY_INVALID: {exc}"
            continue
        if header.null_block:
            headers -= 1
            if saw_null:
                if dangling:
                    yield TRUNCATED
                return
            saw_null = True
            continue
        saw_null = False
        kind = header.type
        if not header.cksum_valid:
            yield "TAR_ENTRY_INVALID: checksum failure"
            continue
        if not header.path:
            yield "TAR_ENTRY_INVALID: path is required"
            continue
        is_link = kind in ("Link", "SymbolicLink")
        if is_link and not header.linkpath:
            yield "TAR_ENTRY_INVALID: linkpath required"
            continue
        if not is_link and kind not in ("GlobalExtendedHeader", "ExtendedHeader") \
                and header.linkpath:
            yield "TAR_ENTRY_INVALID: linkpath forbidden"
            continue
        dangling = False
        remain = header.size
        block_remain = BLOCK * -(-remain // BLOCK)
        # ReadEntry slurps the pending local record, then the global one (path excepted).
        path = header.path
        linkpath: str | None = header.linkpath or None
        entry_size = remain
        for src, is_g in ((ex, False), (gex, True)):
            if src is None:
                continue
            if not is_g and src.get("path") is not None:
                path = src["path"]
            if src.get("linkpath") is not None:
                linkpath = src["linkpath"]
            if src.get("size") is not None:
                entry_size = src["size"]
        if kind in _META:
            if entry_size > MAX_META:
                if blocks.skip(block_remain) < block_remain:
                    yield TRUNCATED
                    return
            elif entry_size > 0:
                raw = blocks.read(block_remain)
                if len(raw) < block_remain:
                    yield TRUNCATED
                    return
                text = raw[:remain].decode("utf-8", errors="replace")
                if kind in ("ExtendedHeader", "OldExtendedHeader"):
                    ex = parse_pax(text, ex, False)
                elif kind == "GlobalExtendedHeader":
                    gex = parse_pax(text, gex, True)
                elif kind == "NextFileHasLongLinkpath":
                    ex = {**(ex or {}), "linkpath": _cut_nul(text)}
                else:
                    ex = {**(ex or {}), "path": _cut_nul(text)}
            else:
                dangling = block_remain > 0
            continue
        ex = None
        entry = Entry(path=path, type=kind if kind in _KINDS else "Unsupported", size=remain,
                      linkpath=linkpath, mode=header.mode)
        if entry.type in ("File", "OldFile", "ContiguousFile") and remain <= max_body:
            data = blocks.read(block_remain)
            entry.body = data[:remain]
            entry.truncated = len(data) < block_remain
        else:
            entry.oversize = remain > max_body and entry.type in ("File", "OldFile",
                                                                  "ContiguousFile")
            got = blocks.skip(block_remain)
            entry.truncated = got < block_remain
        yield entry
        if entry.truncated:
            return
