"""Attacks on chainwatch's Markdown: text a package author controls (names, messages,
snippets, scripts, file paths, indicators) must render, in CommonMark, as exactly the
characters it holds, never as a link, an image, HTML, emphasis, a new table cell or a new
block. markdown-it-py is the oracle (tests/markdown_oracle.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainwatch.exposure import Exposure, Hit
from chainwatch.incidents.brief import build
from chainwatch.incidents.cluster import cluster
from chainwatch.incidents.model import Observation
from chainwatch.incidents.render import render_markdown
from chainwatch.model import (
    Advisory,
    Changes,
    Environment,
    FileChanges,
    Finding,
    InstalledPackage,
    Level,
    PackageRef,
    Severity,
    Verdict,
)
from chainwatch.output.escape import md_code, md_text, one_line
from chainwatch.output.inventory import exposure_markdown
from chainwatch.output.markdown import render
from tests.markdown_oracle import all_visible, headings, inline_of, table_rows, visible

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<!-- hidden --> after",
    "[click](javascript:alert(1))",
    "![pixel](http://192.0.2.1/p.png)",
    "<http://192.0.2.1/autolink>",
    "[ref]: http://192.0.2.1/",
    "the registry's &#x27; &amp; &copy entities",
    "a`b``c```d",
    "`leading backtick",
    "trailing backtick`",
    " padded both sides ",
    "``",
    "col|umn | injected | cells |",
    "back\\|slash pipe \\\\| and \\",
    "*emph* _emph_ **strong** __strong__ ~~strike~~",
    "# heading",
    "> quote",
    "- item",
    "+ item",
    "1. ordered",
    "12) ordered",
    "===",
    "---",
    "```js",
    "~~~",
    "    indented code",
    "first line\n# second line heading\r\n- third line item\rfourth\u2028fifth",
    "\x1b[31mred\x1b[0m \x1b]8;;http://192.0.2.1/\x07link\x1b]8;;\x07",
    "bidi \u202eevil\u202c zero\u200bwidth",
    "\\`not code\\`",
    "www.evil.invalid and https://evil.invalid/x",
    "{{template}} $math$ \\(x\\)",
]


def _expected_text(raw: str) -> str:
    return one_line(raw).strip(" \t")


@pytest.mark.parametrize("raw", HOSTILE)
def test_prose_shows_the_text_and_nothing_else(raw: str) -> None:
    children = inline_of(md_text(raw))
    assert {t.type for t in children} <= {"text"}, [t.type for t in children]
    assert visible(children) == _expected_text(raw)


@pytest.mark.parametrize("raw", HOSTILE)
def test_code_span_shows_the_text_verbatim(raw: str) -> None:
    children = inline_of(f"see {md_code(raw)} here")
    code = [t for t in children if t.type == "code_inline"]
    assert len(code) == 1 and code[0].content == one_line(raw)
    # no entity and no backslash escape is added inside a span (both would show literally)
    assert md_code(raw).count("&") == one_line(raw).count("&")
    assert md_code(raw).count("\\") == one_line(raw).count("\\")


@pytest.mark.parametrize("raw", HOSTILE)
def test_table_cells_hold_the_text_and_keep_their_count(raw: str) -> None:
    doc = "\n".join(["| a | b | c |", "|---|---|---|",
                     f"| {md_text(raw)} | {md_code(raw, in_table=True)} | end |"])
    rows = table_rows(doc)
    assert rows[1] == [_expected_text(raw), one_line(raw), "end"]


@pytest.mark.parametrize("raw", HOSTILE)
def test_headings_hold_the_text(raw: str) -> None:
    assert headings(f"## {md_text(raw)}") == [_expected_text(raw)]


_ALPHABET = st.sampled_from([*"`*_[]()<>&|~!#+-=.:;'\"\\/ \tab1\n", "&#x27;", "&amp;", "<br>",
                             "javascript:"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, min_size=1, max_size=30).map("".join))
def test_any_text_round_trips_in_every_context(raw: str) -> None:
    text = _expected_text(raw)
    if text:
        children = inline_of(md_text(raw))
        assert {t.type for t in children} <= {"text"}
        assert visible(children) == text
        assert table_rows(f"| x |\n|---|\n| {md_text(raw)} |")[1] == [text]
    code = one_line(raw)
    if code:
        assert [t.content for t in inline_of(f"x {md_code(code)} y")
                if t.type == "code_inline"] == [code]
        cell = table_rows(f"| x |\n|---|\n| {md_code(code, in_table=True)} |")[1]
        assert cell == [code]


def _hostile_verdict(raw: str) -> Verdict:
    finding = Finding(rule="CW-TEST", severity=Severity.HIGH, technique="exfiltration",
                      capability="network", message=raw, file=f"lib/{raw}.js", line=3,
                      snippet=raw)
    return Verdict(
        target=PackageRef(f"evil-{raw}", "1.0.1"), level=Level.MALICIOUS, score=90,
        explanation=raw, findings=(finding,), capabilities=("network",),
        baseline=PackageRef(f"evil-{raw}", "1.0.0"),
        changes=Changes(FileChanges(added=("x.js",)), dependencies_added={raw: "^1"},
                        scripts_added={"postinstall": raw}, capabilities_added=("network",)))


@pytest.mark.parametrize("raw", HOSTILE)
def test_scan_report_renders_hostile_fields_as_text(raw: str) -> None:
    text = render([_hostile_verdict(raw)])
    seen = all_visible(text)  # fails on any link, image or foreign HTML
    assert headings(text) == [f"evil-{one_line(raw)}@1.0.1: malicious (score 90) against 1.0.0"]
    rows = table_rows(text)
    assert rows[0] == ["severity", "rule", "where", "evidence"] and len(rows) == 2
    assert rows[1][:3] == ["high", "CW-TEST", f"lib/{one_line(raw)}.js:3"]
    assert rows[1][3] == one_line(raw).lstrip(" \t") + "\n" + one_line(raw)
    assert f"{one_line(raw)}@^1" in seen and f"postinstall: {one_line(raw)}" in seen


@pytest.mark.parametrize("raw", HOSTILE)
def test_exposure_report_renders_hostile_fields_as_text(raw: str) -> None:
    pkg = InstalledPackage(name=f"x{raw}", version="1.0.0", paths=((f"app{raw}", f"x{raw}"),))
    env = Environment(id="e", kind="npm", source=f"/src/{raw}/package-lock.json",
                      packages=(pkg,))
    adv = Advisory(id=f"MAL-{raw}", package=f"x{raw}", versions=("1.0.0",))
    text = exposure_markdown([Exposure(env, (Hit(pkg, (adv,)),))])
    all_visible(text)  # no link, image or foreign HTML
    shown = one_line(raw)
    assert headings(text) == [f"/src/{shown}/package-lock.json (npm)"]
    rows = table_rows(text)
    assert rows[0] == ["package", "advisories", "scope", "via"] and len(rows) == 2
    assert rows[1] == [f"x{shown}@1.0.0", f"MAL-{shown}".rstrip(" \t"), "prod",
                       f"app{shown} > x{shown}".rstrip(" \t")]


@pytest.mark.parametrize("raw", HOSTILE)
def test_brief_renders_hostile_fields_as_text(raw: str) -> None:
    obs = Observation(f"evil{raw}", "1.0.0", "malicious", "verdict", publisher=f"acct{raw}",
                      explanation=raw,
                      findings=({"rule": "R", "technique": "sabotage", "severity": "high",
                                 "message": raw, "file": "a.js", "line": 1},),
                      indicators={"urls": [f"https://x.invalid/{raw}"], "hosts": [raw]})
    (incident,) = cluster([obs])
    text = render_markdown(build(incident))
    seen = all_visible(text)  # no link, image, raw HTML block or foreign inline HTML
    assert f"https://x.invalid/{one_line(raw)}" in seen
    assert f"evil{one_line(raw)}@1.0.0" in seen
    assert "&#x27;" not in seen.replace(one_line(raw), "")


# -- terminal tables --------------------------------------------------------------------------
FORGED = "evil\nleft-padder@1.0.0 (no baseline): BENIGN score 0\n\x1b[2K\rok"


def test_a_table_line_cannot_be_forged_by_a_newline_in_a_name_or_message() -> None:
    from chainwatch.output.table import render as table

    v = Verdict(target=PackageRef(FORGED, "6.6.6"), level=Level.MALICIOUS, score=99,
                explanation=FORGED, capabilities=(),
                findings=(Finding(rule=FORGED, severity=Severity.HIGH, technique="t",
                                  capability="c", message=FORGED, file=FORGED, line=1,
                                  snippet=FORGED),))
    for width in (None, 80):
        out = table([v], width=width)
        assert not any(line.startswith("left-padder@1.0.0") for line in out.splitlines())
        assert "\x1b" not in out and "\r" not in out
        assert out.splitlines()[0].startswith("evil left-padder@1.0.0 (no baseline): BENIGN")
