"""The byte stream npm's tar parser sees: every gzip member, as Node's zlib decodes them.

node-tar decompresses with Node's zlib (`Unzip`) when the archive starts with the gzip magic.
Node keeps decoding after the end of a gzip member when the next byte is not NUL: another
member is decoded, anything else is an error (npm aborts the install). Trailing NUL bytes
are padding and ignored. A zstd archive is not something we read (nor npm on every Node).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from chainwatch.archive.limits import Limits

_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: node-tar aborts when decompressed/compressed bytes read so far exceeds this.
NODE_TAR_MAX_RATIO = 1000


class InflateProblem(Exception):
    """The compressed stream cannot be read the way npm reads it (npm aborts or differs)."""

    def __init__(self, message: str, bomb: bool = False) -> None:
        super().__init__(message)
        self.bomb = bomb


def is_gzip(data: bytes) -> bool:
    return data[:2] == _GZIP_MAGIC


def tar_stream(data: bytes, limits: Limits) -> Iterator[bytes]:
    """Yield the decompressed tar in chunks, checking size and ratio as it goes."""
    if data[:4] == _ZSTD_MAGIC:
        raise InflateProblem("zstd-compressed archive: npm's reading depends on the Node version")
    if not is_gzip(data):
        view = memoryview(data)
        for start in range(0, len(data), _CHUNK):
            yield bytes(view[start : start + _CHUNK])
        return
    yield from _gunzip_members(data, limits)


def _gunzip_members(data: bytes, limits: Limits) -> Iterator[bytes]:
    view = memoryview(data)
    pos = 0  # next byte of `data` not yet given to an inflater
    out = 0
    inflater = zlib.decompressobj(wbits=31)
    while True:
        if inflater.eof:
            pos -= len(inflater.unused_data)
            if pos >= len(data):
                return
            if data[pos] == 0:
                # Node stops at a NUL after a member; what follows is ignored only if it is
                # all NUL (otherwise the outcome depends on how npm's reads are chunked).
                if data.count(0, pos) != len(data) - pos:
                    raise InflateProblem("data after NUL padding following a gzip member")
                return
            inflater = zlib.decompressobj(wbits=31)
        try:
            if inflater.unconsumed_tail:
                piece = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
            elif pos < len(data):
                feed = view[pos : pos + _CHUNK]
                pos += len(feed)
                piece = inflater.decompress(feed, _CHUNK)
            else:
                piece = inflater.flush()
                if not inflater.eof:
                    raise InflateProblem("gzip stream is truncated; npm aborts")
        except zlib.error as exc:
            raise InflateProblem(f"gzip data is corrupt ({exc}); npm aborts") from exc
        if not piece:
            continue
        out += len(piece)
        if out > limits.max_total_bytes:
            raise InflateProblem(
                f"archive unpacks to more than {limits.max_total_bytes} bytes", bomb=True)
        if out > NODE_TAR_MAX_RATIO * max(pos, 1):
            raise InflateProblem(
                f"compression ratio above {NODE_TAR_MAX_RATIO}:1 (npm's tar aborts too)", bomb=True)
        if out > limits.ratio_floor_bytes and out > limits.max_ratio * max(pos, 1):
            raise InflateProblem(
                f"compression ratio above {limits.max_ratio:.0f}:1 (decompression bomb)", bomb=True)
        yield piece
