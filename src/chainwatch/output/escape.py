"""Package authors control names, messages and snippets: make them inert for each medium.

Markdown is escaped by context (CommonMark 0.31 with the GFM table and strikethrough
extensions): :func:`md_text` for prose, headings and table cells, :func:`md_code` for a code
span. Neither uses HTML entities: an entity inside a code span is shown literally
(``&#x27;``), and one in prose is decoded by the renderer but shown raw wherever the Markdown is
read as text.
"""

from __future__ import annotations

import re

# Controls, bidi controls, and characters that show as nothing (format characters, fillers,
# variation selectors, tags), with which two different names look alike on a screen.
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
    "\U000e0000-\U000e0fff]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?")
_NEWLINES = re.compile(r"\r\n|[\r\n\u2028\u2029\x85]")

# Inline constructs anywhere in a line: escapes, code spans, emphasis, links and images
# (``[``, ``]``), raw HTML and autolinks (``<``), entities (``&``), table cells (``|``),
# strikethrough (``~``). ``!``, ``(``, ``)`` and ``>`` mean nothing without ``[``, ``]``, ``<``.
_INLINE = re.compile(r"([\\`*_\[\]<>&|~])")
# Block constructs that only a line's first characters open: headings, block quotes, list
# items, thematic breaks, setext underlines, fences (backtick fences are escaped above).
_LINE_START = re.compile(r"^([ \t]*)(?:([#>+\-=])|(\d{1,9})([.)]))")


def plain(text: str | None) -> str:
    """Strip ANSI sequences, control and bidi-override characters (terminal safety)."""
    if not text:
        return ""
    return _CONTROL.sub("\ufffd", _ANSI.sub("", _NEWLINES.sub("\n", text)))


def one_line(text: str | None) -> str:
    """:func:`plain`, with every line break turned into a space."""
    return plain(text).replace("\n", " ")


def md_text(text: str | None) -> str:
    """Untrusted text as literal Markdown prose, heading or table-cell content: it renders as
    exactly the same visible characters and never as a link, image, HTML, emphasis, code, an
    entity, a new table cell or a new block. Line breaks become spaces."""
    value = _INLINE.sub(r"\\\1", one_line(text).lstrip(" \t"))
    return _LINE_START.sub(lambda m: m.group(1) + (
        "\\" + m.group(2) if m.group(2) else m.group(3) + "\\" + m.group(4)), value, count=1)


def md_code(text: str | None, in_table: bool = False) -> str:
    """Untrusted text as one inline code span that shows it verbatim: a backtick fence longer
    than any backtick run inside, a space of padding where CommonMark would strip one, no
    entities. In a GFM table cell ``|`` is written ``\\|`` (the table, not the span, reads
    that escape). Line breaks become spaces; empty text gives an empty string."""
    value = one_line(text)
    if not value:
        return ""
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    if value.strip(" ") and (value[0] == "`" or value[-1] == "`"
                             or (value[0] == " " and value[-1] == " ")):
        value = f" {value} "
    if in_table:
        value = value.replace("|", "\\|")
    return f"{fence}{value}{fence}"


markdown = md_text
