"""Whatever a package author puts in a name, path, message or snippet, the verdict page keeps
its structure: the same elements and attributes as with harmless values, and the author's
characters shown as text (controls and bidi overrides as U+FFFD)."""

from __future__ import annotations

import warnings
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch.serve import pages, views
from chainwatch.serve.auth import Auth
from tests.serve_pages_support import RowsModel, scan_doc
from tests.unit.test_serve_pages import assert_inert, parse

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

KEY = "k@1.0.0"
# markup pieces mixed with arbitrary text (surrogates excluded: they cannot be sent as UTF-8)
PIECES = st.sampled_from(["<", ">", "\"", "'", "&", "</code>", "</pre>", "<script>", "<!--",
                          "]]>", "javascript:", "\u202e", "\u200b", "\x00", "\x1b[31m", "{{",
                          "{%", "\n", "`", "&lt;", "<img src=x onerror=alert(1)>"])
TEXT = st.lists(st.one_of(PIECES, st.text(st.characters(exclude_categories=("Cs",)),
                                          max_size=20)), min_size=1, max_size=8).map("".join) \
    .filter(lambda v: views.text(v) != "")  # an empty value leaves its element out, rightly


def render(doc: dict[str, Any]) -> str:
    model = RowsModel(docs={KEY: doc})
    app = Starlette(routes=pages.routes(model, Auth(None)))
    with TestClient(app) as c:
        r = c.get(f"/verdicts/{KEY}")
    assert r.status_code == 200
    return r.text


def shape(html: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(tag, tuple(sorted(attrs))) for tag, attrs in parse(html).tags]


def hostile_doc(name: str, path: str, message: str, snippet: str) -> dict[str, Any]:
    doc = scan_doc(name=name)
    for f in doc["findings"]:
        f.update(file=path, message=message, snippet=snippet)
    doc["changes"]["files"]["added"] = [path]
    doc["changes"]["dependencies"]["added"] = {name: snippet}
    return doc


HARMLESS = render(hostile_doc("n", "p", "m", "s"))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=TEXT, path=TEXT, message=TEXT, snippet=TEXT)
def test_the_verdict_page_keeps_its_shape_whatever_the_author_wrote(
        name: str, path: str, message: str, snippet: str) -> None:
    html = render(hostile_doc(name, path, message, snippet))
    assert shape(html) == shape(HARMLESS)
    assert_inert(html)
    text = "".join(parse(html).text)
    for value, limit in ((path, 1000), (message, views.MAX_TEXT), (snippet, views.MAX_SNIPPET)):
        shown = views.text(value, limit)
        if shown.strip():
            assert shown.strip() in text
