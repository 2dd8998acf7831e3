"""Small helpers for turning byte offsets into lines and short, safe snippets."""

from __future__ import annotations

import bisect
import re
from functools import cached_property

SNIPPET_WIDTH = 160
_WS = re.compile(r"\s+")


class LineIndex:
    """Maps byte offsets of one file to 1-based line numbers and snippets.

    Most files are asked about a few places only: those are counted directly (``bytes.count``
    and ``rfind`` run in C); the table of line starts is built when a file is asked often."""

    #: Lookups answered by counting before the table of line starts is built.
    DIRECT_LOOKUPS = 16

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._table: list[int] | None = None
        self._lookups = 0

    @property
    def _starts(self) -> list[int]:
        if self._table is None:
            starts = [0]
            find = self.data.find
            pos = find(b"\n")
            while pos != -1:
                starts.append(pos + 1)
                pos = find(b"\n", pos + 1)
            self._table = starts
        return self._table

    @cached_property
    def is_binary(self) -> bool:
        """Whether the file looks binary (a NUL or many control bytes in its first 8 KB)."""
        return _binary(self.data[:8192])

    def line_of(self, offset: int) -> int:
        if self._table is None and offset >= 0 and self._lookups < self.DIRECT_LOOKUPS:
            self._lookups += 1
            return self.data.count(b"\n", 0, offset) + 1
        return bisect.bisect_right(self._starts, offset)

    def _line_start(self, offset: int) -> int:
        if self._table is None and offset >= 0:
            return self.data.rfind(b"\n", 0, offset) + 1
        return self._starts[self.line_of(offset) - 1]

    def snippet(self, offset: int, length: int = 0) -> str:
        """The line around ``offset``, at most SNIPPET_WIDTH characters, with ``…`` where it
        was cut; binary content (a compiled addon, an image) as hex of the matched bytes, never
        raw bytes that a terminal would render as garbage or control sequences."""
        if self.is_binary or _binary(self.data[max(0, offset - 64): offset + max(length, 1) + 64]):
            shown = self.data[offset: offset + min(max(length, 8), 24)]
            return f"binary data at byte {offset}: {shown.hex(' ')}"
        line_start = start = self._line_start(offset)
        line_end = end = self.data.find(b"\n", start)
        line_end = end = len(self.data) if end == -1 else end
        if end - start > SNIPPET_WIDTH:
            half = max(0, (SNIPPET_WIDTH - min(length, SNIPPET_WIDTH)) // 2)
            start = max(start, offset - half)
            end = min(end, start + SNIPPET_WIDTH)
        text = _WS.sub(" ", self.data[start:end].decode("utf-8", errors="replace")).strip()
        text = text[:SNIPPET_WIDTH]
        return ("…" if start > line_start else "") + text + ("…" if end < line_end else "")

    def line_text(self, line: int) -> bytes:
        start = self._starts[line - 1]
        end = self.data.find(b"\n", start)
        return self.data[start : len(self.data) if end == -1 else end]

    @property
    def line_count(self) -> int:
        return len(self._starts) if self._table is not None else self.data.count(b"\n") + 1


def _binary(window: bytes) -> bool:
    """Whether bytes look like binary rather than text: a NUL, or many control bytes."""
    if b"\x00" in window:
        return True
    controls = len(window) - len(window.translate(None, _CONTROLS))
    return controls * 10 > len(window)


#: bytes below 9 and from 14 to 31 (tab, newline, vertical tab, form feed, return are text)
_CONTROLS = bytes([*range(9), *range(14, 32)])
