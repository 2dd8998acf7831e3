"""Hostile package names, file paths and snippets come back from the API as data, exactly.

What a package author controls (finding paths and snippets, messages, incident titles built
from package names, fleet labels from CI) must survive the round trip byte for byte as JSON
strings, be served as ``application/json`` with ``nosniff``, and be escaped in the one HTML
answer (the incident report). Nothing of it may break the response (a lone surrogate, a NUL,
a huge string) or leak a traceback.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, insert

from chainwatch.db import connect
from chainwatch.verdicts import verdicts
from tests.unit.test_serve_api import app_with, get
from tests.unit.test_serve_api_queries import put_env

NASTY = [
    "</script><script>alert(document.cookie)</script>",
    "\"><img src=x onerror=alert(1)>",
    "../../../../etc/passwd",
    "C:\\Windows\\System32\\drivers\\etc\\hosts",
    "line\nbreak\r\nand\ttab\x00nul\x1b[2J\x07",
    "\u202egnp.exe\u2066\u2069",
    "\ud800 lone surrogate",
    "{{7*7}}${7*7}<%= 7*7 %>",
    "x" * 100_000,
]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return connect(f"sqlite:///{tmp_path / 'serve.db'}")


def store(engine: Engine, key: str, doc: dict[str, Any], level: str = "malicious",
          at: datetime | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(insert(verdicts).values(
            key=key, package=doc["package"], version=doc["version"], integrity=key,
            level=level, score=90, baseline=None, explanation="", top_rule="hostile",
            # a text column cannot hold a lone surrogate: the document (JSON) can
            top_message=doc["findings"][0]["snippet"][:1000].encode(
                "utf-8", "replace").decode(),
            scanned_at=(at or datetime.now(UTC)).isoformat(timespec="seconds"),
            elapsed_s=0.0, document=json.dumps(doc)))


@pytest.mark.parametrize("nasty", NASTY, ids=range(len(NASTY)))
def test_hostile_strings_round_trip_exactly(engine: Engine, nasty: str) -> None:
    doc = {"schema": "chainwatch.scan/1", "package": "evil-pkg", "version": "1.0.0",
           "verdict": "malicious", "publisher": nasty, "published": None,
           "findings": [{"rule": "r", "file": nasty, "line": 1, "snippet": nasty,
                         "message": nasty}]}
    key = "sha512-" + "A/+=" * 8
    store(engine, key, doc)
    app = app_with(engine)
    r = get(app, f"/api/v1/verdicts/{quote(key, safe='')}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.content.isascii()  # every non-ASCII character travels escaped
    assert json.loads(r.content) == doc
    listed = get(app, "/api/v1/verdicts").json()["items"][0]
    assert listed["top_message"] == nasty[:1000].encode("utf-8", "replace").decode()


def test_hostile_labels_and_paths_in_the_fleet(engine: Engine) -> None:
    labels = [n for n in NASTY[:-1] if n.encode("utf-8", "replace").decode() == n]
    for i, nasty in enumerate(labels):
        put_env(engine, nasty, f"2026-09-0{i + 1}T00:00:00+00:00", [("chalk", "5.6.1")])
    app = app_with(engine)
    got = get(app, "/api/v1/exposure", params={"package": "chalk@5.6.1"}).json()["items"]
    assert sorted(e["label"] for e in got) == sorted(labels)
    envs = get(app, "/api/v1/environments", params={"limit": 50}).json()["items"]
    assert sorted(e["label"] for e in envs) == sorted(labels)


def test_the_incident_report_escapes_what_authors_control(engine: Engine) -> None:
    now = datetime.now(UTC)
    for i in range(2):
        store(engine, f"sha512-k{i}", {
            "schema": "chainwatch.scan/1", "package": f"pkg{i}", "version": "6.6.6",
            "verdict": "malicious", "publisher": NASTY[0],
            "published": (now - timedelta(minutes=i)).isoformat(), "explanation": NASTY[1],
            "findings": [{"rule": "r", "file": NASTY[0], "line": 1, "snippet": NASTY[0],
                          "message": NASTY[1], "severity": "critical"}]})
    app = app_with(engine)
    incidents = get(app, "/api/v1/incidents").json()["items"]
    assert len(incidents) == 1 and NASTY[0] in incidents[0]["title"]  # data, unescaped
    report = get(app, f"/api/v1/incidents/{incidents[0]['id']}/report.html")
    assert report.status_code == 200
    assert "<script>alert" not in report.text and "<img src=x" not in report.text
    assert "&lt;/script&gt;" in report.text or "&lt;script&gt;" in report.text
    assert "script-src" not in report.headers["content-security-policy"]


@pytest.mark.parametrize("path", [
    "/api/v1/verdicts/%00", "/api/v1/verdicts/" + "a" * 5000, "/api/v1/incidents/%2e%2e%2f",
    "/api/v1/scans/" + "%ff" * 100, "/api/v1/incidents/\u202e/report.html"])
def test_hostile_paths_are_404_json(engine: Engine, path: str) -> None:
    r = get(app_with(engine), path)
    assert r.status_code == 404 and set(r.json()) == {"error"}


@pytest.mark.parametrize("query", [
    "package=%00", "package=%3Cscript%3E", "since=%ED%A0%80", "cursor=%E2%80%AE",
    "cursor=W10", "cursor=WyJ2ZXJkaWN0cyJd", "level=benign%00", "package=%ff%fe"])
def test_hostile_query_parameters_are_422_json(engine: Engine, query: str) -> None:
    r = get(app_with(engine), f"/api/v1/verdicts?{query}")
    assert r.status_code == 422 and set(r.json()) == {"error"}


def test_deeply_nested_json_is_one_422_line(engine: Engine) -> None:
    from tests.unit.test_serve_api import post

    app = app_with(engine)
    deep = b"[" * 100_000
    for url in ("/api/v1/environments", "/api/v1/scans"):
        r = post(app, url, content=deep, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json() == {"error": "the body is JSON nested too deeply"}
    lockfile = "[" * 100_000  # a lockfile posted as text, parsed on the server
    r = post(app, "/api/v1/environments", json={
        "label": "ci", "filename": "package-lock.json", "content": lockfile})
    assert r.status_code == 422 and "\n" not in r.json()["error"], r.text


@pytest.mark.parametrize("wanted", ["/pkg", "~/.npmrc", " /etc/passwd", "/etc", "../x",
                                    "a/b", "$HOME"])
def test_a_target_naming_a_path_is_refused_with_one_text(engine: Engine, wanted: str) -> None:
    from tests.unit.test_serve_api import FakeScans, post

    scans = FakeScans()
    app = app_with(engine, scans)
    texts = set()
    for body in ({"target": f"x@{wanted}"}, {"target": "x@1.0.0", "against": f"x@{wanted}"}):
        r = post(app, "/api/v1/scans", json=body)
        assert r.status_code == 422, r.text
        texts.add(r.json()["error"].split(":", 1)[1])
    assert len(texts) == 1  # the same text whatever exists on the server
    assert scans.asked == []
    r = post(app, "/api/v1/scans?against=x@" + quote(wanted, safe=""), content=b"\x1f\x8b",
             headers={"Content-Type": "application/gzip"})
    assert r.status_code == 422 and r.json()["error"].split(":", 1)[1] in texts


def test_a_cross_site_write_without_origin_is_refused(engine: Engine) -> None:
    from tests.unit.test_serve_api import post

    app = app_with(engine, token=None)
    for site in ("cross-site", "same-site", "Cross-Site"):
        r = post(app, "/api/v1/scans", json={"target": "chalk@1.0.0"},
                 headers={"Sec-Fetch-Site": site})
        assert r.status_code == 403, site
        assert r.json() == {"error": "a write from another site is refused"}
    for site in ("same-origin", "none"):
        assert post(app, "/api/v1/scans", json={"target": "chalk@1.0.0"},
                    headers={"Sec-Fetch-Site": site}).status_code == 202


def test_a_cursor_with_a_lone_surrogate_is_one_clear_422(engine: Engine) -> None:
    from chainwatch.serve.queries import encode_cursor

    app = app_with(engine)
    for url, cursor in (("/api/v1/alerts", encode_cursor("alerts", 1.0, "\ud800")),
                        ("/api/v1/verdicts", encode_cursor("verdicts", "\udc80", "k"))):
        r = get(app, url, params={"cursor": cursor})
        assert r.status_code == 422, r.text
        assert r.json() == {"error": "invalid cursor"}
