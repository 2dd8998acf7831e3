"""The pages in a real headless Chromium: log in, open every page, follow links, check what is
shown, and that nothing loads from another origin, nothing breaks the CSP, no author-controlled
markup runs, the overview refreshes its alerts by itself, and everything works without JS."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import insert

from tests.browser.conftest import TOKEN, Server
from tests.serve_pages_support import HOSTILE_NAME, IMG, SNIPPET

#: set CHAINWATCH_SCREENSHOTS=docs to refresh docs/screenshots/ (else they go to a temp folder)
SCREENSHOTS = os.environ.get("CHAINWATCH_SCREENSHOTS")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
#: the few the README shows; the others only go to the test's temp folder
README_SHOTS = {"overview", "verdict", "exposure", "decisions"}

# page.evaluate runs outside the page's CSP; this records violations the page itself reports
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
window.__pwned = false;
"""


@dataclass
class Watched:
    """What one browser tab asked for and complained about."""

    origin: str
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(self.origin + "/")
                and not u.startswith(("data:", "about:"))]


@pytest.fixture
def tab(served: Server, browser: Any) -> Iterator[tuple[Any, Watched]]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    page = context.new_page()
    watched = Watched(served.url)
    page.on("request", lambda r: watched.requests.append(r.url))
    page.on("console", lambda m: watched.console.append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("response", lambda r: watched.console.append(f"HTTP {r.status} {r.url}")
            if r.status >= 400 else None)
    page.on("pageerror", lambda e: watched.console.append(f"pageerror: {e}"))
    page.on("dialog", lambda d: (watched.dialogs.append(d.message), d.dismiss()))
    page.add_init_script(WATCH_CSP)
    yield page, watched
    context.close()


def login(page: Any, url: str, goto: str = "/") -> None:
    page.goto(url + goto)
    assert urlsplit(page.url).path == "/login"
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert urlsplit(page.url).path == urlsplit(goto).path, page.url


def clean(page: Any, watched: Watched) -> None:
    """No foreign request, no CSP violation, no console error, no script of an author ran."""
    assert watched.foreign() == []
    assert page.evaluate("window.__csp") == []
    assert watched.console == []
    assert watched.dialogs == []


def shot(page: Any, name: str, tmp_path: Path) -> None:
    folder = DOCS if SCREENSHOTS == "docs" and name in README_SHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def test_login_then_every_page_by_its_links(served: Server, tab: tuple[Any, Watched],
                                            tmp_path: Path) -> None:
    page, watched = tab
    page.goto(served.url + "/login")
    shot(page, "login", tmp_path)
    login(page, served.url, "/")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["chainwatch_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("chainwatch_session") == -1

    # overview: counts, both charts, the latest alerts with delivery status, flagged releases
    assert page.inner_text("[data-count=malicious]") == "5"
    assert page.inner_text("[data-count=blocked]") == "3"
    assert page.locator("figure.chart svg").count() == 2
    assert page.locator("svg rect.level-malicious").count() >= 1
    assert page.locator("svg rect.latency").count() >= 10
    alerts = page.inner_text("#latest-alerts")
    assert "chalk@5.6.1" in alerts and "HTTP 503 from the receiver" in alerts
    shot(page, "overview", tmp_path)

    # what was flagged today, and who holds it, straight from the overview
    assert page.inner_text("#today-malicious") == "5 malicious"
    page.locator("table.flagged tr", has_text="chalk").locator("a", has_text="who holds it").click()
    page.wait_for_load_state()
    assert page.inner_text("p.answer") == "2 environments hold chalk@5.6.1."
    page.go_back()
    page.wait_for_load_state()
    page.click("#today-malicious")
    page.wait_for_load_state()
    assert len(page.locator("table.verdicts .level").all_inner_texts()) == 5
    page.go_back()
    page.wait_for_load_state()

    # an alert links to its verdict: findings with file, line and snippet, the capability delta
    page.locator("#latest-alerts a", has_text="chalk@5.6.1").click()
    page.wait_for_load_state()
    assert urlsplit(page.url).path.startswith("/verdicts/")
    assert page.inner_text("h1").startswith("Verdict")
    finding = page.inner_text("article.finding")
    assert "wallet-address-swap" in finding and "index.js, line 1" in finding
    assert "_0x112fa8" in page.inner_text("pre.snippet")
    assert "crypto-wallet" in page.inner_text("dd:has(.cap-added)")
    assert "Files changed (1)" in page.inner_text("main")
    shot(page, "verdict", tmp_path)

    # who holds it: the verdict page links to the exposure search
    page.locator("main a", has_text="Who holds chalk@5.6.1?").click()
    page.wait_for_load_state()
    assert page.input_value("input[name=package]") == "chalk@5.6.1"
    table = page.inner_text("table.exposure")
    assert "web-shop" in table and "web-shop > @babel/core > chalk" in table
    assert "billing-api" not in table  # it holds 5.6.0
    assert page.inner_text("p.answer") == "2 environments hold chalk@5.6.1."
    shot(page, "exposure", tmp_path)
    page.fill("input[name=package]", "debug@>=4.4.2 <4.4.3")
    page.click("form[role=search] button")
    page.wait_for_load_state()
    assert "billing-api > express > debug" in page.inner_text("table.exposure")

    # every page of the navigation
    expected = {"Verdicts": "sha512", "Alerts": "ansi-styles@6.2.2", "Incidents": "qix",
                "Environments": "billing-api", "Gate decisions": "GHSA-8mgj-vmr8-frr6"}
    for label, needle in expected.items():
        page.click(f"nav a:text-is('{label}')")
        page.wait_for_load_state()
        assert page.inner_text("h1") == label
        body = page.inner_text("main")
        assert needle in body or needle in page.content(), label
    shot(page, "decisions", tmp_path)

    # verdict filters and a flagged release from the list
    page.click("nav a:text-is('Verdicts')")
    page.wait_for_load_state()
    page.select_option("select[name=level]", "malicious")
    page.click("form.filters button")
    page.wait_for_load_state()
    levels = page.locator("table.verdicts .level").all_inner_texts()
    assert levels and set(levels) == {"malicious"} and len(levels) == 5
    page.locator("table.verdicts a", has_text="debug").click()
    page.wait_for_load_state()
    assert "debug@4.4.2" in page.inner_text("main")

    # an incident, with its brief inline
    page.click("nav a:text-is('Incidents')")
    page.wait_for_load_state()
    page.locator("tr", has_text="by qix").locator("a").first.click()
    page.wait_for_load_state()
    main = page.inner_text("main")
    assert "Bottom line up front" in main and "strip-ansi" in main
    assert "Recommendations" in main
    shot(page, "incident", tmp_path)
    clean(page, watched)
    # its printable report, from the API (same origin, the session cookie)
    page.locator("main a", has_text="printable report").click()
    page.wait_for_load_state()
    assert "Bottom line up front" in page.inner_text("body")
    clean(page, watched)


def test_hostile_names_paths_and_snippets_stay_text(served: Server,
                                                   tab: tuple[Any, Watched]) -> None:
    page, watched = tab
    login(page, served.url, "/verdicts")
    page.locator("table.verdicts a", has_text="evil<script>").click()
    page.wait_for_load_state()
    main = page.inner_text("main")
    assert HOSTILE_NAME in main and SNIPPET in page.inner_text("pre.snippet")
    assert IMG in main and "lib/\ufffdtxt.exe" in main and "\u202e" not in page.content()
    # the javascript: reference of the finding is not a link
    assert page.locator("a[href^='javascript']").count() == 0
    for path in ("/exposure?package=chalk@5.6.1", "/decisions", "/environments", "/incidents",
                 "/alerts", "/"):
        page.goto(served.url + path)
        assert page.locator("main img, main script, main iframe").count() == 0
        assert "<script>" in page.inner_text("main") or path == "/", path
    page.goto(served.url + "/incidents")
    page.locator("tr", has_text="mallory").locator("a").first.click()
    page.wait_for_load_state()
    assert "<img src=x onerror=alert(2)>" in page.inner_text("main")
    assert not page.evaluate("window.__pwned")
    clean(page, watched)


def test_overview_refreshes_new_alerts_by_itself(served: Server,
                                                 tab: tuple[Any, Watched]) -> None:
    from playwright.sync_api import expect

    from chainwatch.watch.state import alerts

    page, watched = tab
    page.clock.install()
    login(page, served.url, "/")
    assert "left-pad@9.9.9" not in page.inner_text("#latest-alerts")
    with served.engine.begin() as conn:
        conn.execute(insert(alerts).values(
            id="release:left-pad@9.9.9", kind="release", created_at=time.time() + 60,
            payload=json.dumps({"package": "left-pad", "version": "9.9.9",
                                "verdict": "malicious", "action": "block it"})))
    page.clock.run_for(31_000)
    expect(page.locator("#latest-alerts")).to_contain_text("left-pad@9.9.9", timeout=10_000)
    assert "refreshed" in page.inner_text("#refresh-state")
    assert any(urlsplit(u).path == "/overview/alerts" for u in watched.requests)
    clean(page, watched)


def test_scan_a_release_from_the_verdict_list(served: Server, tab: tuple[Any, Watched]) -> None:
    page, watched = tab
    login(page, served.url, "/verdicts")
    page.fill("form.scan input[name=target]", "left-pad@1.3.0")
    page.click("form.scan button")
    page.wait_for_load_state()
    assert urlsplit(page.url).path.startswith("/scans/")
    assert page.inner_text(".scan-status") in ("queued", "running")
    page.wait_for_url(lambda u: urlsplit(u).path.startswith("/verdicts/"), timeout=15_000)
    assert page.inner_text("h1") == "Verdict left-pad@1.3.0"
    page.goto(served.url + "/verdicts?package=left-pad")
    assert "1.3.0" in page.inner_text("table.verdicts")
    clean(page, watched)


def test_every_page_works_without_javascript(served: Server, browser: Any) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(served.url + "/decisions?action=block")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert urlsplit(page.url).path == "/decisions"
        assert set(page.locator("table.decisions .action").all_inner_texts()) == {"block"}
        page.goto(served.url + "/")
        page.click("#refresh-link")
        page.wait_for_load_state()
        assert page.locator("figure.chart svg").count() == 2
        page.goto(served.url + "/exposure")
        page.fill("input[name=package]", "chalk@5.6.1")
        page.press("input[name=package]", "Enter")
        page.wait_for_load_state()
        assert "web-shop" in page.inner_text("main")
        page.click("header form.logout button")
        page.wait_for_load_state()
        assert urlsplit(page.url).path == "/login"
        page.goto(served.url + "/")
        assert urlsplit(page.url).path == "/login"
    finally:
        context.close()


def test_two_people_at_once_and_one_logs_out(served: Server, browser: Any) -> None:
    first, second = browser.new_context(), browser.new_context()
    try:
        a, b = first.new_page(), second.new_page()
        login(a, served.url, "/verdicts")
        login(b, served.url, "/incidents")
        a.click("header form.logout button")
        a.wait_for_load_state()
        assert urlsplit(a.url).path == "/login"
        b.reload()
        assert urlsplit(b.url).path == "/incidents" and b.inner_text("h1") == "Incidents"
    finally:
        first.close()
        second.close()


def test_a_form_posted_from_another_site_is_refused(served: Server, browser: Any,
                                                    tmp_path: Path) -> None:
    """A page on another origin (a second loopback server) posts the logout form to a
    logged-in browser: SameSite=Strict keeps the cookie back and the CSRF check refuses it."""
    import http.server
    import threading

    attack = (f'<form id="f" method="post" action="{served.url}/logout">'
              '<input name="csrf" value="guess"></form><script>f.submit()</script>').encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(attack)

        def log_message(self, *args: Any) -> None:
            pass

    evil = http.server.HTTPServer(("127.0.0.2", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        login(page, served.url, "/")
        with page.expect_response(lambda r: r.url == served.url + "/logout") as posted:
            page.goto(f"http://127.0.0.2:{evil.server_address[1]}/")
        assert posted.value.request.method == "POST" and posted.value.status == 403
        assert "refused" in posted.value.text().lower()
        page.goto(served.url + "/")
        assert urlsplit(page.url).path == "/"  # still logged in
    finally:
        context.close()
        evil.shutdown()


def test_a_new_user_runs_chainwatch_serve_and_answers_the_three_questions(
        browser: Any, tmp_path: Path) -> None:
    """The `chainwatch serve` command as a user starts it (a token from the environment, a
    database URL), and the three questions answered in the browser without the CLI."""
    import socket
    import subprocess
    import sys

    import httpx

    from chainwatch.db import connect
    from tests.serve_pages_support import fill

    db = f"sqlite:///{tmp_path / 'team.db'}"
    fill(connect(db))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainwatch", "serve", "--listen", f"127.0.0.1:{port}",
         "--db", db], env={**os.environ, "CHAINWATCH_TOKEN": TOKEN},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = browser.new_context()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "chainwatch serve did not answer in 60 s"
            time.sleep(0.2)
        page = context.new_page()
        login(page, url, "/")
        # what was flagged today
        assert page.inner_text("#today-malicious") == "5 malicious"
        # who holds it
        page.locator("table.flagged tr", has_text="chalk").locator("a", has_text="who holds it"
                                                                     ).click()
        page.wait_for_load_state()
        assert page.inner_text("p.answer") == "2 environments hold chalk@5.6.1."
        # what the gate stopped
        page.click("nav a:text-is('Gate decisions')")
        page.wait_for_load_state()
        page.select_option("select[name=action]", "block")
        page.click("form.filters button")
        page.wait_for_load_state()
        blocked = page.inner_text("table.decisions")
        assert "chalk@5.6.1" in blocked and "debug@4.4.2" in blocked and "left-pad" not in blocked
    finally:
        context.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_scan_form_works_without_a_token_and_refuses_another_site(
        served_open: Server, browser: Any) -> None:
    """With no token (the default), the scan form carries the double-submit form cookie's
    value: it works from the verdict list, and a form posted from another site is refused."""
    import http.server
    import threading

    context = browser.new_context()
    evil = None
    try:
        page = context.new_page()
        page.goto(served_open.url + "/verdicts")
        assert page.get_attribute("form.scan input[name=csrf]", "value")
        page.fill("form.scan input[name=target]", "left-pad@1.3.1")
        page.click("form.scan button")
        page.wait_for_load_state()
        page.wait_for_url(lambda u: urlsplit(u).path.startswith(("/verdicts/", "/scans/")))
        assert "Refused" not in page.inner_text("h1")
        page.wait_for_url(lambda u: urlsplit(u).path.startswith("/verdicts/"), timeout=15_000)
        assert page.inner_text("h1") == "Verdict left-pad@1.3.1"

        csrf = page.context.cookies(served_open.url)
        sent = next(c["value"] for c in csrf if c["name"] == "chainwatch_form")
        attack = (f'<form id="f" method="post" action="{served_open.url}/scans">'
                  f'<input name="csrf" value="{sent}"><input name="target" value="x@1.0.0">'
                  '</form><script>f.submit()</script>').encode()

        class Evil(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(attack)

            def log_message(self, *args: Any) -> None:
                pass

        evil = http.server.HTTPServer(("127.0.0.2", 0), Evil)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        with page.expect_response(lambda r: r.url == served_open.url + "/scans") as posted:
            page.goto(f"http://127.0.0.2:{evil.server_address[1]}/")
        assert posted.value.request.method == "POST" and posted.value.status == 403
        assert "refused" in posted.value.text().lower()
    finally:
        context.close()
        if evil is not None:
            evil.shutdown()
