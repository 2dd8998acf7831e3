"""CommonMark as the oracle for Markdown output: parse with markdown-it-py (CommonMark plus the
GFM table and strikethrough extensions, as GitHub renders) and read back what a reader sees."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token

#: the only raw HTML chainwatch's own Markdown writes
OWN_HTML = {"<br>": "\n", "<sub>": "", "</sub>": ""}


def parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def visible(children: list[Token] | None) -> str:
    """The text a reader sees for a run of inline tokens. Links, images and raw HTML other than
    chainwatch's own ``<br>``/``<sub>`` raise AssertionError: untrusted text must never become
    one."""
    out = []
    for tok in children or []:
        if tok.type in ("text", "code_inline"):
            out.append(tok.content)
        elif tok.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif tok.type == "html_inline":
            assert tok.content in OWN_HTML, f"raw HTML in the output: {tok.content!r}"
            out.append(OWN_HTML[tok.content])
        elif tok.type in ("link_open", "image", "link_close"):
            raise AssertionError(f"a link or image in the output: {tok}")
        # em/strong/s open and close tokens show nothing themselves
    return "".join(out)


def blocks(markdown: str) -> list[Token]:
    return parser().parse(markdown)


def inline_of(markdown: str) -> list[Token]:
    """The inline tokens of a document that must be one paragraph."""
    toks = blocks(markdown)
    assert [t.type for t in toks] == ["paragraph_open", "inline", "paragraph_close"], \
        [t.type for t in toks]
    return toks[1].children or []


def table_rows(markdown: str) -> list[list[str]]:
    """Every table row (header rows included) of a document, as the visible text of each cell."""
    rows: list[list[str]] = []
    toks = blocks(markdown)
    for i, tok in enumerate(toks):
        if tok.type == "tr_open":
            rows.append([])
        elif tok.type == "inline" and i and toks[i - 1].type in ("td_open", "th_open"):
            rows[-1].append(visible(tok.children))
    return rows


def headings(markdown: str) -> list[str]:
    toks = blocks(markdown)
    return [visible(toks[i + 1].children) for i, t in enumerate(toks) if t.type == "heading_open"]


def all_visible(markdown: str) -> str:
    """The visible text of every inline run, one per line (links, images, foreign HTML and
    HTML blocks fail)."""
    out = []
    for tok in blocks(markdown):
        assert tok.type != "html_block", f"an HTML block in the output: {tok.content!r}"
        if tok.type == "inline":
            out.append(visible(tok.children))
        elif tok.type in ("code_block", "fence"):
            out.append(tok.content)
    return "\n".join(out)
