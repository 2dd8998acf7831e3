"""Package authors control names, messages and snippets: make them inert for each medium."""

from __future__ import annotations

import html
import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?")


def plain(text: str | None) -> str:
    """Strip ANSI sequences, control and bidi-override characters (terminal safety)."""
    if not text:
        return ""
    return _CONTROL.sub("\ufffd", _ANSI.sub("", text))


def markdown(text: str | None) -> str:
    """Safe inside a Markdown table cell or paragraph: no HTML, links, emphasis or pipes."""
    value = html.escape(plain(text), quote=True)
    value = re.sub(r"([\\`*_{}\[\]()#+\-!|~>])", r"\\\1", value)
    return value.replace("\n", " ")
