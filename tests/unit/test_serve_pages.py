"""The pages as HTML: escaping of everything an author controls, the strict CSP, login and CSRF.

The browser tests (tests/browser) show the same pages in a real Chromium; these check the HTML
itself, element by element, with the standard library's HTML parser as the oracle.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.applications import Starlette

with warnings.catch_warnings():  # Starlette warns that its TestClient (an httpx client) moves
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from chainwatch.serve import charts, pages, views
from chainwatch.serve.auth import COOKIE, Auth
from tests.serve_pages_support import (
    HOSTILE_NAME,
    IMG,
    JS_LINK,
    SCRIPT,
    SNIPPET,
    VERDICT_ROWS,
    RowsModel,
    scan_doc,
)

PAGES = ["/", "/verdicts", f"/verdicts/{VERDICT_ROWS[0].key}", "/alerts", "/incidents",
         "/incidents/inc-1", "/exposure?package=chalk%405.6.1", "/environments", "/decisions",
         "/overview/alerts"]
TOKEN = "s3cret-token-for-tests"



class Elements(HTMLParser):
    """Every start tag with its attributes, and the text between them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Elements:
    p = Elements()
    p.feed(html)
    p.close()
    return p


def app(token: str | None = None, model: RowsModel | None = None) -> tuple[Starlette, Auth]:
    auth = Auth(token)
    return Starlette(routes=pages.routes(model or RowsModel(), auth)), auth


def client(token: str | None = None, model: RowsModel | None = None) -> TestClient:
    return _client(app(token, model)[0])


def _client(a: Starlette) -> TestClient:
    """httpx against the app (Starlette's TestClient is an httpx.Client), redirects not followed."""
    return TestClient(a, base_url="http://testserver", follow_redirects=False)


def assert_inert(html: str) -> Elements:
    """No element or attribute an author could have injected: scripts only from our static
    folder, no event-handler or style attributes, no link or source off this origin except
    http(s) references, no bidi override in the text."""
    doc = parse(html)
    for tag, attrs in doc.tags:
        assert tag not in ("img", "iframe", "object", "embed", "base"), (tag, attrs)
        if tag == "script":
            assert attrs.get("src") == "/static/refresh.js", attrs
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, attrs)
            assert name != "style", (tag, attrs)
            if name in ("href", "src", "action") and value is not None:
                parts = urlsplit(value)
                if parts.scheme or parts.netloc:
                    assert tag == "a" and parts.scheme == "https", (tag, attrs)
                else:
                    assert value.startswith("/") and not value.startswith("//"), (tag, attrs)
    assert "\u202e" not in html
    return doc


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_hostile_values_as_text(path: str) -> None:
    with client() as c:
        r = c.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert "'unsafe-inline'" not in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    doc = assert_inert(r.text)
    text = "".join(doc.text)
    # the hostile values are shown, as the characters they are
    if path not in ("/overview/alerts", "/alerts", "/decisions", "/environments"):
        assert "alert(1)" in text or "alert(2)" in text, path


def test_verdict_page_shows_findings_changes_and_capabilities_escaped() -> None:
    with client() as c:
        r = c.get(f"/verdicts/{VERDICT_ROWS[0].key}")
    html = r.text
    doc = assert_inert(html)
    text = "".join(doc.text)
    assert HOSTILE_NAME in text and SNIPPET in text and IMG in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # the RLO is replaced, the rest of the path kept, with file and line
    assert "lib/\ufffdtxt.exe" in text and ", line 3" in text
    # a javascript: reference is not a link; the https one is
    hrefs = [a.get("href") for t, a in doc.tags if t == "a"]
    assert JS_LINK not in hrefs and "https://attack.mitre.org/techniques/T1027/" in hrefs
    for needle in ("child_process", "Files added (2)", "postinstall", "4 files unchanged",
                   "Dependencies added"):
        assert needle in text, needle
    # the exposure link carries the name in its query, percent-encoded
    exposure = next(h for h in hrefs if h and h.startswith("/exposure?"))
    assert parse_qs(urlsplit(exposure).query)["package"] == [f"{HOSTILE_NAME}@1.0.1"]


def test_links_to_hostile_keys_stay_on_this_site() -> None:
    key = "javascript:alert(1)//x?y#z"
    model = RowsModel(verdicts=[VERDICT_ROWS[0].__class__(**{**VERDICT_ROWS[0].__dict__,
                                                             "key": key})],
                      docs={key: scan_doc()})
    with client(model=model) as c:
        html = c.get("/verdicts").text
        href = next(a["href"] for t, a in parse(html).tags
                    if t == "a" and (a.get("href") or "").startswith("/verdicts/"))
        assert href == "/verdicts/javascript%3Aalert%281%29%2F%2Fx%3Fy%23z"
        # and the link leads to that verdict
        assert c.get(href).status_code == 200


def test_the_verdict_page_survives_a_damaged_document() -> None:
    key = "damaged@1.0.0"
    doc = {"package": ["not", "a", "string"], "version": 7, "findings": "nope",
           "capabilities": 5, "changes": {"files": {"added": "x"}, "dependencies": []},
           "dynamic": {"ran": False, "reason": SCRIPT, "events": [1, None, {"kind": IMG}]}}
    with client(model=RowsModel(docs={key: doc})) as c:
        r = c.get(f"/verdicts/{key}")
    assert r.status_code == 200
    assert_inert(r.text)


def test_a_huge_document_is_shown_bounded() -> None:
    key = "big@1.0.0"
    with client(model=RowsModel(docs={key: scan_doc(findings=5000)})) as c:
        r = c.get(f"/verdicts/{key}")
    assert r.status_code == 200
    assert r.text.count('<article class="finding') == views.MAX_ITEMS
    assert f"and {5000 - views.MAX_ITEMS} more" in r.text


def test_text_makes_controls_visible_and_bounds_length() -> None:
    assert views.text("a\u202eb\u200bc\x1b[31m") == "a\ufffdb\ufffdc"
    assert views.text("x" * 10_000, 100) == "x" * 100 + " …"
    assert views.text(None) == "" and views.text({"a": 1}) == ""


@pytest.mark.parametrize("url", [JS_LINK, "JavaScript:alert(1)", " javascript:x", "data:text/html,x",
                                 "//evil.invalid/x", "/relative", "https://a.invalid/\u202e",
                                 "https:///nohost", 5])
def test_only_absolute_http_urls_become_links(url: object) -> None:
    assert views.http_url(url) is None


def test_http_url_keeps_a_plain_reference() -> None:
    assert views.http_url("https://attack.mitre.org/techniques/T1027/") == \
        "https://attack.mitre.org/techniques/T1027/"


def test_filters_reach_the_read_model_and_paging_keeps_them() -> None:
    model = RowsModel(verdicts=VERDICT_ROWS * 3)
    with client(model=model) as c:
        r = c.get("/verdicts", params={"level": "malicious", "limit": "2"})
        assert r.status_code == 200
        assert model.calls[-1][1] == {"package": None, "level": "malicious", "since": None,
                                      "limit": 2, "cursor": None}
        nxt = next(a["href"] for t, a in parse(r.text).tags if t == "a" and a.get("rel") == "next")
        assert parse_qs(urlsplit(nxt).query) == {"level": ["malicious"], "limit": ["2"],
                                                 "cursor": ["2"]}
        r2 = c.get(nxt)
        assert model.calls[-1][1]["cursor"] == "2" and r2.status_code == 200
        assert 'rel="next"' not in r2.text  # three malicious rows: the second page is the last


@pytest.mark.parametrize("query", [{"level": "evil"}, {"limit": "0"}, {"limit": "100000"},
                                   {"package": "x" * 5000}, {"since": "yesterday"}])
def test_a_bad_query_is_one_line_and_400(query: dict[str, str]) -> None:
    with client() as c:
        r = c.get("/verdicts", params=query)
    assert r.status_code == 400
    assert "Traceback" not in r.text and 'class="error"' in r.text


def test_a_long_exposure_answer_is_cut_and_counted() -> None:
    from chainwatch.serve.queries import ExposureRow

    class Many(RowsModel):
        def exposure(self, spec: str) -> list[ExposureRow]:
            return [ExposureRow(f"env{i}", "npm", "s", "chalk", "5.6.1", False, "a > chalk",
                                "t", "t") for i in range(pages.EXPOSURE_ROWS + 7)]

    with client(model=Many()) as c:
        html = c.get("/exposure", params={"package": "chalk@5.6.1"}).text
    assert html.count("<tr><td>env") == pages.EXPOSURE_ROWS
    assert f"{pages.EXPOSURE_ROWS + 7} environments hold" in html and "and 7 more rows" in html


def test_a_long_key_or_id_names_nothing() -> None:
    with client() as c:
        for path in ("/verdicts/" + "k" * 5000, "/incidents/" + "i" * 5000):
            r = c.get(path)
            assert r.status_code == 404 and "k" * 301 not in r.text and "i" * 301 not in r.text


def test_exposure_search_answers_and_says_when_a_spec_is_bad() -> None:
    with client() as c:
        r = c.get("/exposure", params={"package": "chalk@5.6.1"})
        text = "".join(assert_inert(r.text).text)
        assert "1 environment holds" in text and f"web-app{SCRIPT}" in text
        assert f"web-app > {HOSTILE_NAME} > chalk" in text
        bad = c.get("/exposure", params={"package": "nonsense"})
        assert bad.status_code == 400 and "is not name@version" in bad.text
        none = c.get("/exposure", params={"package": "left-pad@1.0.0"})
        assert "No recorded environment holds" in none.text


def test_overview_charts_are_inline_svg_with_their_figures() -> None:
    with client() as c:
        html = c.get("/").text
    doc = parse(html)
    assert sum(1 for t, _ in doc.tags if t == "svg") == 2
    classes = [a.get("class") for t, a in doc.tags if t == "rect"]
    assert "level-malicious" in classes and "latency" in classes
    assert "2025-09-03" in "".join(doc.text) and "no data" in "".join(doc.text)


def test_verdicts_chart_scales_bars_to_the_busiest_day() -> None:
    c = charts.verdicts_chart([("2025-09-01", {"benign": 1}), ("2025-09-02", {"benign": 3, "malicious": 1})])
    heights = {b.title: b.height for b in c.bars}
    assert heights["2025-09-02: 3 benign"] == pytest.approx(3 * heights["2025-09-01: 1 benign"])
    full = charts.HEIGHT - 12 - 22
    assert heights["2025-09-02: 3 benign"] + heights["2025-09-02: 1 malicious"] == pytest.approx(full)
    assert charts.verdicts_chart([("2025-09-01", {})]).empty


def test_latency_chart_skips_unknown_days() -> None:
    c = charts.latency_chart([("2025-09-01", 120.0), ("2025-09-02", None), ("2025-09-03", 7200.0)])
    assert [b.title for b in c.bars] == ["2025-09-01: median 2 min", "2025-09-03: median 2.0 h"]
    assert c.scale == "2.0 h" and charts.latency_chart([("2025-09-01", None)]).empty


# ---- login, logout, CSRF ------------------------------------------------------------------

def _field(html: str, name: str) -> str:
    return next(a["value"] or "" for t, a in parse(html).tags if t == "input" and a.get("name") == name)


def _csrf(html: str) -> str:
    return _field(html, "csrf")


def _login(html: str, **fields: str) -> dict[str, str]:
    """The login form's hidden fields, as the browser would post them, with ``fields``."""
    return {"csrf": _field(html, "csrf"), "nonce": _field(html, "nonce"), **fields}


@pytest.mark.parametrize("path", PAGES)
def test_with_a_token_every_page_redirects_to_login(path: str) -> None:
    with client(TOKEN) as c:
        r = c.get(path)
    assert r.status_code == 303
    target = urlsplit(r.headers["location"])
    assert target.path == "/login"
    assert parse_qs(target.query)["next"][0] == path


def test_login_sets_a_strict_httponly_cookie_and_returns_to_the_page() -> None:
    with client(TOKEN) as c:
        form = c.get("/login?next=/decisions")
        assert form.status_code == 200 and 'type="password"' in form.text
        r = c.post("/login", data=_login(form.text, token=TOKEN, next="/decisions"))
        assert r.status_code == 303 and r.headers["location"] == "/decisions"
        cookie = next(v.lower() for v in r.headers.get_list("set-cookie")
                      if v.startswith(COOKIE + "="))
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/decisions").status_code == 200


def test_login_refuses_a_wrong_token_and_a_missing_or_foreign_csrf() -> None:
    with client(TOKEN) as c:
        html = c.get("/login").text
        wrong = c.post("/login", data=_login(html, token="guess"))
        assert wrong.status_code == 401 and COOKIE not in wrong.headers.get("set-cookie", "")
        html = wrong.text  # a new login nonce comes with the form shown again
        for fields in ({"token": TOKEN}, {**_login(html, token=TOKEN), "csrf": "0" * 64},
                       {**_login(html, token=TOKEN), "nonce": "forged"},
                       {"csrf": _field(html, "csrf"), "token": TOKEN}):
            refused = c.post("/login", data=fields)
            assert refused.status_code == 403, fields
            assert COOKIE not in refused.headers.get("set-cookie", "")
        cross = c.post("/login", data=_login(html, token=TOKEN),
                       headers={"Origin": "http://evil.invalid", "Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403 and COOKIE not in cross.headers.get("set-cookie", "")
        assert c.post("/login", json=_login(html, token=TOKEN)).status_code == 400
        assert c.get("/").status_code == 303


def test_guessing_the_token_locks_the_address_out() -> None:
    from chainwatch.serve.auth import MAX_FAILURES

    with client(TOKEN) as c:
        html = c.get("/login").text
        for _ in range(MAX_FAILURES):
            r = c.post("/login", data=_login(html, token="guess"))
            assert r.status_code == 401
            html = r.text
        locked = c.post("/login", data=_login(html, token=TOKEN))  # even the right one, now
        assert locked.status_code == 429 and "too many wrong tokens" in locked.text
        assert COOKIE not in locked.headers.get("set-cookie", "")


def test_a_login_form_from_another_browser_does_not_work() -> None:
    """The nonce is tied to the browser that loaded the form (its cookie), not just the site."""
    a, _ = app(TOKEN)
    with _client(a) as attacker, _client(a) as victim:
        html = attacker.get("/login").text
        assert victim.post("/login", data=_login(html, token=TOKEN)).status_code == 403


def test_logout_needs_the_sessions_csrf_token_and_ends_the_session() -> None:
    with client(TOKEN) as c:
        c.post("/login", data=_login(c.get("/login").text, token=TOKEN))
        page = c.get("/")
        assert page.status_code == 200
        session = c.cookies[COOKIE]
        assert c.post("/logout", data={}).status_code == 403
        assert c.get("/").status_code == 200  # still logged in
        r = c.post("/logout", data={"csrf": _csrf(page.text)})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert c.get("/").status_code == 303
        c.cookies.set(COOKIE, session)  # a copy of the cookie kept from before the logout
        assert c.get("/").status_code == 303


def test_the_csrf_token_of_one_session_does_not_work_in_another() -> None:
    a, _ = app(TOKEN)
    with _client(a) as one, _client(a) as two:
        for c in (one, two):
            c.post("/login", data=_login(c.get("/login").text, token=TOKEN))
        csrf_one = _csrf(one.get("/").text)
        assert csrf_one != _csrf(two.get("/").text)
        assert two.post("/logout", data={"csrf": csrf_one}).status_code == 403


@pytest.mark.parametrize("target", ["//evil.invalid/", "/\\evil.invalid", "https://evil.invalid/",
                                    "javascript:alert(1)", "/ok\r\nSet-Cookie: x=1", ""])
def test_login_never_redirects_off_site(target: str) -> None:
    assert pages.safe_next(target) == "/"
    with client(TOKEN) as c:
        html = c.get("/login", params={"next": target}).text
        r = c.post("/login", data=_login(html, token=TOKEN, next=target))
        assert r.headers["location"] == "/"


def test_a_large_form_is_refused() -> None:
    with client(TOKEN) as c:
        r = c.post("/login", data=_login(c.get("/login").text, token="x" * (pages.MAX_FORM + 1)))
    assert r.status_code == 400


def test_without_a_token_there_is_no_login_and_no_logout_form() -> None:
    with client() as c:
        assert c.get("/login").status_code == 303
        html = c.get("/").text
    assert 'action="/logout"' not in html


def test_no_inline_script_or_style_in_any_template() -> None:
    from pathlib import Path

    folder = Path(pages.__file__).parent / "templates"
    for path in folder.glob("*.html"):
        source = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", source), path.name
        assert "<style" not in source and "style=" not in source, path.name
        assert not re.search(r"\son[a-z]+=", source), path.name
        assert "|safe" not in source.replace(" ", "") and "autoescape false" not in source


# ---- the scan form ------------------------------------------------------------------------

class Scans:
    """A scan pool whose scans wait for the test's go and return the hostile document."""

    def __init__(self, fail: str | None = None, queue_size: int = 4,
                 note: str | None = None) -> None:
        from chainwatch.serve.scans import ScanPool, ScanRequest

        self.go = threading.Event()
        self.seen: list[ScanRequest] = []

        def scan(request: ScanRequest) -> tuple[str, dict[str, Any], str | None]:
            self.seen.append(request)
            self.go.wait(10)
            if fail:
                raise RuntimeError(fail)
            return VERDICT_ROWS[0].key, scan_doc(), note

        self.pool = ScanPool(scan, workers=1, queue_size=queue_size)


def scan_app(scans: Scans | None, token: str | None = TOKEN) -> TestClient:
    a, _ = app(token)
    if scans is not None:
        a.state.scans = lambda: scans.pool
    c = _client(a)
    if token:
        c.post("/login", data=_login(c.get("/login").text, token=token))
    return c


def wait_status(c: TestClient, location: str, *, until: str) -> Any:
    deadline = time.monotonic() + 10
    while True:
        r = c.get(location)
        if until in r.text or r.status_code == 303 or time.monotonic() > deadline:
            return r
        time.sleep(0.02)


def test_the_scan_form_queues_a_scan_and_leads_to_its_verdict() -> None:
    scans = Scans()
    with scan_app(scans) as c:
        page = c.get("/verdicts")
        assert 'action="/scans"' in page.text
        r = c.post("/scans", data={"csrf": _csrf(page.text), "target": "chalk@5.6.1",
                                   "against": "chalk@5.6.0"})
        assert r.status_code == 303 and r.headers["location"].startswith("/scans/")
        running = wait_status(c, r.headers["location"], until="running")
        assert running.status_code == 200 and 'http-equiv="refresh"' in running.text
        assert "chalk@5.6.1" in running.text and "chalk@5.6.0" in running.text
        scans.go.set()
        deadline = time.monotonic() + 10
        while (done := c.get(r.headers["location"])).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert done.status_code == 303
        assert c.get(done.headers["location"]).status_code == 200
    assert [(s.target, s.against) for s in scans.seen] == [("chalk@5.6.1", "chalk@5.6.0")]
    scans.pool.close()


def test_a_scan_not_kept_in_verdict_memory_says_so_and_links_the_stored_verdict() -> None:
    scans = Scans(note=f"not kept in verdict memory: {SCRIPT}")
    scans.go.set()
    with scan_app(scans) as c:
        r = c.post("/scans", data={"csrf": _csrf(c.get("/verdicts").text),
                                   "target": "chalk@5.6.1", "against": "chalk@1.0.0"})
        done = wait_status(c, r.headers["location"], until="not kept")
        assert done.status_code == 200 and "not kept in verdict memory" in done.text
        assert 'http-equiv="refresh"' not in done.text and "the stored verdict</a>" in done.text
        assert_inert(done.text)
    scans.pool.close()


@pytest.mark.parametrize("fields", [
    {"target": "/etc/passwd"}, {"target": "file:../x.tgz"}, {"target": "../../etc"},
    {"target": "https://evil.invalid/x.tgz"}, {"target": "chalk"}, {"target": ""},
    {"target": "chalk@5.6.1", "against": "git+ssh://evil.invalid/x"}, {"target": "a" * 400},
    {"target": "chalk@5.6.1", "against": "chalk@5.6.1"}])
def test_the_scan_form_refuses_anything_but_a_registry_release(fields: dict[str, str]) -> None:
    scans = Scans()
    with scan_app(scans) as c:
        r = c.post("/scans", data={"csrf": _csrf(c.get("/verdicts").text), **fields})
    assert r.status_code == 400 and 'class="error"' in r.text
    assert scans.seen == []
    scans.pool.close()


def test_the_scan_form_needs_the_csrf_token_and_a_session() -> None:
    scans = Scans()
    with scan_app(scans) as c:
        assert c.post("/scans", data={"target": "chalk@5.6.1"}).status_code == 403
        assert c.post("/scans", data={"target": "chalk@5.6.1", "csrf": "x"}).status_code == 403
    with scan_app(scans, token=None) as open_site, scan_app(scans) as logged_in:
        csrf = _csrf(logged_in.get("/verdicts").text)
        assert open_site.post("/scans", data={"target": "chalk@5.6.1", "csrf": csrf}
                              ).status_code == 403  # another server's session token
    a, _ = app(TOKEN)
    a.state.scans = lambda: scans.pool
    with _client(a) as anonymous:
        r = anonymous.post("/scans", data={"target": "chalk@5.6.1"})
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert scans.seen == []
    scans.pool.close()


def test_a_failed_scan_says_why_and_a_full_queue_is_503() -> None:
    scans = Scans(fail=f"registry said {SCRIPT}", queue_size=1)
    with scan_app(scans) as c:
        csrf = _csrf(c.get("/verdicts").text)
        first = c.post("/scans", data={"csrf": csrf, "target": "chalk@5.6.1"})
        wait_status(c, first.headers["location"], until="running")
        c.post("/scans", data={"csrf": csrf, "target": "debug@4.4.2"})  # fills the queue
        full = c.post("/scans", data={"csrf": csrf, "target": "ansi-styles@6.2.2"})
        assert full.status_code == 503 and "full" in full.text
        scans.go.set()
        failed = wait_status(c, first.headers["location"], until="failed")
        assert "failed" in failed.text and 'http-equiv="refresh"' not in failed.text
        assert_inert(failed.text)
        assert c.get("/scans/nope").status_code == 404
    scans.pool.close()


def test_no_scan_form_without_a_scanner() -> None:
    with scan_app(None) as c:
        assert 'action="/scans"' not in c.get("/verdicts").text
        assert c.post("/scans", data={"csrf": _csrf(c.get("/").text), "target": "chalk@5.6.1"}
                      ).status_code == 503


def test_without_a_token_the_scan_form_carries_the_form_cookie_and_works() -> None:
    """The default `chainwatch serve` (no token): the form holds the double-submit cookie's
    value, which is accepted; an empty, missing, foreign or malformed value is refused."""
    scans = Scans()
    with scan_app(scans, token=None) as c, scan_app(scans, token=None) as other:
        page = c.get("/verdicts")
        csrf = _csrf(page.text)
        assert csrf and c.cookies.get(pages.FORM_COOKIE) == csrf
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert _csrf(c.get("/verdicts").text) == csrf  # stable for one browser
        foreign = _csrf(other.get("/verdicts").text)
        assert foreign != csrf
        for bad in ("", "x", foreign, csrf + "x"):
            r = c.post("/scans", data={"csrf": bad, "target": "chalk@5.6.1"})
            assert r.status_code == 403, bad
        assert c.post("/scans", data={"target": "chalk@5.6.1"}).status_code == 403
        cross = c.post("/scans", data={"csrf": csrf, "target": "chalk@5.6.1"},
                       headers={"sec-fetch-site": "cross-site"})
        assert cross.status_code == 403
        assert scans.seen == []
        r = c.post("/scans", data={"csrf": csrf, "target": "chalk@5.6.1"})
        assert r.status_code == 303 and r.headers["location"].startswith("/scans/")
        c.cookies.clear()  # the value without its cookie (what another site could send)
        assert c.post("/scans", data={"csrf": csrf, "target": "chalk@5.6.1"}).status_code == 403
    scans.go.set()
    scans.pool.close()
    assert [s.target for s in scans.seen] == ["chalk@5.6.1"]


def test_decisions_repeated_by_runs_are_one_row_with_a_count() -> None:
    from chainwatch.serve.queries import DecisionRow, Page

    class Repeated(RowsModel):
        def decisions(self, *, action: str | None = None, limit: int = 50,
                      cursor: str | None = None) -> Page[DecisionRow]:
            rows = [DecisionRow(pk=10 - i, time=f"2025-09-08T14:0{5 - i}:00Z", origin="check",
                                package="chalk", version="5.6.1", action="block",
                                rule="verdict", reason="malicious", source="package-lock.json")
                    for i in range(3)]
            return Page(rows, None)

    html = client(model=Repeated()).get("/decisions").text
    assert html.count('class="runs"') == 1 and '<td class="runs">3</td>' in html
    assert "2025-09-08T14:05:00Z" in html and "first 2025-09-08T14:03:00Z" in html


def test_the_overview_names_its_counts_and_the_empty_latency_chart() -> None:
    from chainwatch.serve.queries import Overview

    class Quiet(RowsModel):
        def overview(self, days: int = 14) -> Overview:
            o = super().overview(days)
            return Overview(counts=o.counts, verdicts_per_day=o.verdicts_per_day,
                            latency_per_day=[(d, None) for d, _ in o.latency_per_day],
                            latest_alerts=o.latest_alerts, latest_flagged=o.latest_flagged)

    text = " ".join(" ".join(parse(client(model=Quiet()).get("/").text).text).split())
    assert "1 environment labels" in text
    assert "1 releases blocked (distinct package, version and rule)" in text
    assert "filled by chainwatch watch" in text and "No data for" not in text


def test_environments_page_lists_labels_with_their_sources() -> None:
    html = client().get("/environments").text
    assert_inert(html)
    text = " ".join(" ".join(parse(html).text).split())
    assert "Environment (label)" in text and "Recordings" in text and "812 packages" in text


def test_incidents_show_the_leading_hypothesis_by_its_title() -> None:
    c = client()
    listed = " ".join(" ".join(parse(c.get("/incidents").text).text).split())
    assert "Targeted account takeover for financial theft (high)" in listed
    brief = " ".join(" ".join(parse(c.get("/incidents/inc-1").text).text).split())
    assert "Leading: Account takeover (H1), confidence high." in brief


def test_the_verdict_lists_say_where_the_bytes_came_from() -> None:
    from chainwatch.serve.queries import VerdictRow

    rows = [VerdictRow(key="sha512-up", package="chalk", version="5.3.0", integrity="sha512-up",
                       level="malicious", score=90, baseline=None, top_rule="r",
                       top_message="m", scanned_at="2025-09-08T13:20:00Z", origin="tarball",
                       origin_label="upload"),
            VerdictRow(key="nx@20.9.0", package="nx", version="20.9.0", integrity=None,
                       level="malicious", score=90, baseline="20.8.0", top_rule="r",
                       top_message="m", scanned_at="2025-09-08T13:10:00Z", origin="registry",
                       origin_label="registry")]
    doc = scan_doc()
    doc.update(origin="tarball", source="upload")
    with client(model=RowsModel(verdicts=rows, docs={"sha512-up": doc})) as c:
        listed = c.get("/verdicts").text
        missing = c.get("/verdicts/chalk@5.3.0")
        page = c.get("/verdicts/sha512-up").text
    assert "upload: local files whose package.json claims" in page
    cells = re.findall(r'<td class="origin origin-(\w+)">([^<]*)</td>', listed)
    assert cells == [("tarball", "upload"), ("registry", "registry")]
    assert missing.status_code == 404 and "keyed by their bytes" in missing.text
