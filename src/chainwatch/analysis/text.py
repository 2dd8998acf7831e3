"""Small helpers for turning byte offsets into lines and short, safe snippets."""

from __future__ import annotations

import bisect
import re

SNIPPET_WIDTH = 160
_WS = re.compile(r"\s+")


class LineIndex:
    """Maps byte offsets of one file to 1-based line numbers and snippets."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._starts = [0]
        find = data.find
        pos = find(b"\n")
        while pos != -1:
            self._starts.append(pos + 1)
            pos = find(b"\n", pos + 1)

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset)

    def snippet(self, offset: int, length: int = 0) -> str:
        line = self.line_of(offset)
        start = self._starts[line - 1]
        end = self.data.find(b"\n", start)
        end = len(self.data) if end == -1 else end
        if end - start > SNIPPET_WIDTH:
            half = max(0, (SNIPPET_WIDTH - min(length, SNIPPET_WIDTH)) // 2)
            start = max(start, offset - half)
            end = min(end, start + SNIPPET_WIDTH)
        text = self.data[start:end].decode("utf-8", errors="replace")
        return _WS.sub(" ", text).strip()[:SNIPPET_WIDTH]

    def line_text(self, line: int) -> bytes:
        start = self._starts[line - 1]
        end = self.data.find(b"\n", start)
        return self.data[start : len(self.data) if end == -1 else end]

    @property
    def line_count(self) -> int:
        return len(self._starts)
