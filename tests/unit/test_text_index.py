"""LineIndex answers by counting for a few lookups and by its table after: the same answers."""

from __future__ import annotations

import bisect
import random

import pytest

from chainwatch.analysis.text import LineIndex, _binary


def _reference_line(data: bytes, offset: int) -> int:
    starts = [0] + [i + 1 for i, b in enumerate(data) if b == 0x0A]
    return bisect.bisect_right(starts, offset)


@pytest.mark.parametrize("seed", range(8))
def test_line_numbers_and_snippets_match_the_table(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = b"ab \n\n\r\t;{}" + bytes([0xC3, 0xA9])
    data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 3000)))
    if seed % 2:
        data = data.replace(b"\n", b"") + b"x" * 500 + b"\n" + data  # long lines too
    offsets = [0, len(data), len(data) + 5, -1, *(rng.randint(0, max(len(data) - 1, 0))
                                                 for _ in range(60))]
    counted, tabled = LineIndex(data), LineIndex(data)
    tabled._starts  # noqa: B018 - build the table first: every lookup uses it
    assert counted.line_count == tabled.line_count == data.count(b"\n") + 1
    for off in offsets:  # the first DIRECT_LOOKUPS by counting, the rest by the table
        assert counted.line_of(off) == tabled.line_of(off) == _reference_line(data, off)
        if 0 <= off <= len(data):
            length = rng.randint(0, 40)
            assert LineIndex(data).snippet(off, length) == tabled.snippet(off, length)


def test_binary_counts_control_bytes_as_before() -> None:
    for window in (b"", b"text\n\t\r", bytes(range(1, 32)) * 3, b"a" * 90 + bytes(range(1, 9)) * 2,
                   b"a" * 100 + b"\x01" * 11, b"a" * 100 + b"\x01" * 10, b"\x0e" * 5):
        expected = b"\x00" in window or sum(
            1 for b in window if b < 9 or 13 < b < 32) * 10 > len(window)
        assert _binary(window) is expected
