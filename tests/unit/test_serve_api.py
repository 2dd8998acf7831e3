"""The serve JSON API through httpx against the ASGI app (no network, a real SQLite file)."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import re
import tarfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette

from chainwatch.db import connect
from chainwatch.errors import UsageError
from chainwatch.serve import api as api_module
from chainwatch.serve.app import create_app
from chainwatch.serve.auth import COOKIE, CSRF_HEADER, Auth
from chainwatch.serve.scans import ScanPool, ScanRequest
from tests.unit.test_serve_api_queries import HOSTILE, NOW, put_env, put_verdict, wave

TOKEN = "t0ken-for-the-api-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return connect(f"sqlite:///{tmp_path / 'serve.db'}")


def run(app: Starlette, body: Callable[[httpx.AsyncClient], Awaitable[Any]],
        headers: dict[str, str] | None = None, base: str = "http://127.0.0.1:8080") -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base,
                                     headers=headers) as client:
            return await body(client)
    return asyncio.run(go())


def get(app: Starlette, url: str, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", BEARER)
    return run(app, lambda c: c.get(url, **kw), headers)  # type: ignore[no-any-return]


def post(app: Starlette, url: str, **kw: Any) -> httpx.Response:
    headers = {**BEARER, **kw.pop("headers", {})}
    return run(app, lambda c: c.post(url, **kw), headers)  # type: ignore[no-any-return]


class FakeScans:
    """A scan function recording what it was asked; optionally held until released."""

    def __init__(self, hold: threading.Event | None = None, fail: Exception | None = None):
        self.asked: list[ScanRequest] = []
        self.hold = hold
        self.fail = fail

    def __call__(self, request: ScanRequest) -> tuple[str, dict[str, Any]]:
        self.asked.append(request)
        if self.hold is not None:
            self.hold.wait(10)
        if self.fail is not None:
            raise self.fail
        name = request.target or "upload"
        return f"sha512-{name}", {"schema": "chainwatch.scan/1", "package": name,
                                  "verdict": "benign", "snippet": HOSTILE}


def app_with(engine: Engine, scan: FakeScans | None = None, **kw: Any) -> Starlette:
    pool = ScanPool(scan or FakeScans(), workers=1, queue_size=kw.pop("queue_size", 8))
    return create_app(engine, token=kw.pop("token", TOKEN), scans=pool, **kw)


def test_healthz_is_open_and_every_response_is_guarded(engine: Engine) -> None:
    app = app_with(engine)
    r = get(app, "/healthz", headers={})
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    denied = get(app, "/api/v1/verdicts", headers={})
    assert denied.status_code == 401 and set(denied.json()) == {"error"}
    assert denied.headers["www-authenticate"].startswith("Bearer")
    assert denied.headers["x-content-type-options"] == "nosniff"
    assert get(app, "/api/v1/verdicts", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert get(app, "/api/v1/verdicts").status_code == 200


def test_no_token_means_open_api(engine: Engine) -> None:
    app = app_with(engine, token=None)
    assert get(app, "/api/v1/verdicts", headers={}).status_code == 200


def test_every_route_is_in_the_openapi_description(engine: Engine) -> None:
    app = app_with(engine)
    spec = get(app, "/openapi.json", headers={}).json()
    assert spec["openapi"].startswith("3.")
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", getattr(route, "path", ""))
        if not path.startswith(("/api/", "/healthz", "/openapi.json")):
            continue  # pages: h/pages' routes, not part of the JSON API
        methods = {m.lower() for m in (getattr(route, "methods", None) or ())} - {"head"}
        assert path in spec["paths"], path
        assert methods <= set(spec["paths"][path]), (path, methods)
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert op["responses"], path
            assert (op["security"] == []) == (not path.startswith("/api/v1")), path


def test_verdicts_list_filter_page_and_document(engine: Engine) -> None:
    from datetime import timedelta

    key = "sha512-ab+/cd=="  # base64 integrity strings hold '/' and '+'
    put_verdict(engine, "chalk", "5.6.1", "malicious", NOW, key=key, snippet=HOSTILE)
    for i in range(3):
        put_verdict(engine, f"p{i}", "1.0.0", "benign", NOW - timedelta(minutes=i + 1))
    app = app_with(engine)
    first = get(app, "/api/v1/verdicts?limit=2").json()
    assert [v["package"] for v in first["items"]] == ["chalk", "p0"]
    second = get(app, "/api/v1/verdicts", params={"limit": 2,
                                                  "cursor": first["next_cursor"]}).json()
    assert [v["package"] for v in second["items"]] == ["p1", "p2"]
    assert second["next_cursor"] is None
    only = get(app, "/api/v1/verdicts?level=malicious&package=chalk").json()["items"]
    assert len(only) == 1 and only[0]["top_message"] == HOSTILE and only[0]["key"] == key
    doc = get(app, f"/api/v1/verdicts/{quote(key, safe='')}")
    assert doc.status_code == 200 and doc.json()["snippet"] == HOSTILE
    assert doc.json()["schema"] == "chainwatch.scan/1"
    missing = get(app, "/api/v1/verdicts/sha512-nothing")
    assert missing.status_code == 404 and set(missing.json()) == {"error"}


@pytest.mark.parametrize("query", [
    "limit=0", "limit=501", "limit=abc", "limit=-1", "limit=" + "9" * 40, "cursor=@@@",
    "cursor=" + "A" * 700, "package=..%2Fetc", "package=" + "a" * 300, "level=pwned",
    "since=tomorrow", "limit=1&limit=2"])
def test_bad_query_parameters_are_422(engine: Engine, query: str) -> None:
    r = get(engine and app_with(engine), f"/api/v1/verdicts?{query}")
    assert r.status_code in (422,), (query, r.text)
    assert set(r.json()) == {"error"} and "\n" not in r.json()["error"]


def test_errors_are_one_json_line_never_a_traceback(engine: Engine,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_with(engine)
    r = get(app, "/api/v1/nothing-here")
    assert r.status_code == 404 and set(r.json()) == {"error"}
    r = run(app, lambda c: c.delete("/api/v1/verdicts"), BEARER)
    assert r.status_code == 405 and set(r.json()) == {"error"}

    def boom(**_: Any) -> Any:
        raise RuntimeError("secret internals /srv/x.py line 3")

    monkeypatch.setattr(app.state.model, "alerts", boom)
    r = get(app, "/api/v1/alerts")
    assert r.status_code == 500 and r.json() == {"error": "internal error (see the server's log)"}
    assert "Traceback" not in r.text and "secret" not in r.text


def test_database_busy_is_503(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    app = app_with(engine)

    def locked(**_: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    monkeypatch.setattr(app.state.model, "decisions", locked)
    r = get(app, "/api/v1/decisions")
    assert r.status_code == 503 and "locked" not in r.text and r.headers["retry-after"]


def wait_done(app: Starlette, ident: str) -> dict[str, Any]:
    for _ in range(200):
        job: dict[str, Any] = get(app, f"/api/v1/scans/{ident}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.02)
    raise AssertionError("scan did not finish")


def test_scan_a_target(engine: Engine) -> None:
    scans = FakeScans()
    app = app_with(engine, scans)
    r = post(app, "/api/v1/scans", json={"target": "@scope/pkg@1.2.3", "against": "none"})
    assert r.status_code == 202 and r.headers["location"] == f"/api/v1/scans/{r.json()['id']}"
    job = wait_done(app, r.json()["id"])
    assert job["status"] == "done" and job["document"]["snippet"] == HOSTILE
    assert job["verdict_key"] == "sha512-@scope/pkg@1.2.3"
    assert scans.asked == [ScanRequest(target="@scope/pkg@1.2.3", against="none")]
    assert get(app, "/api/v1/scans/unknown").status_code == 404


def test_a_failed_scan_is_one_line(engine: Engine) -> None:
    app = app_with(engine, FakeScans(fail=UsageError("chalk@9.9.9: no such version\nreally")))
    job = wait_done(app, post(app, "/api/v1/scans", json={"target": "chalk@9.9.9"}).json()["id"])
    assert job["status"] == "failed" and job["error"] == "chalk@9.9.9: no such version really"
    app = app_with(engine, FakeScans(fail=RuntimeError("/srv/internal detail")))
    job = wait_done(app, post(app, "/api/v1/scans", json={"target": "chalk@9.9.9"}).json()["id"])
    assert job["status"] == "failed" and "internal detail" not in job["error"]


@pytest.mark.parametrize("target", [
    "/etc/passwd", "../../etc/passwd", "./package", "~/x", "chalk", "file:../x",
    "chalk@file:../x", "git+https://example.invalid/x.git", "https://example.invalid/x.tgz",
    "github:user/repo", "npm:chalk@1.0.0", "x@npm:chalk@1.0.0", "C:\\x", "chalk@1.0.0#x",
    "a" * 400, "", "chalk@1.0.0\n", "pkg/../../x@1.0.0", "..@1.0.0"])
def test_targets_that_are_not_registry_releases_are_refused(engine: Engine, target: str) -> None:
    scans = FakeScans()
    app = app_with(engine, scans)
    r = post(app, "/api/v1/scans", json={"target": target})
    assert r.status_code == 422, target
    r = post(app, "/api/v1/scans", json={"target": "chalk@1.0.0", "against": target or "x"})
    assert r.status_code == 422, target
    assert scans.asked == []


def targz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_scan_an_uploaded_tarball(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    scans = FakeScans()
    app = app_with(engine, scans)
    body = targz({"package/package.json": b'{"name":"x","version":"1.0.0"}'})
    r = post(app, "/api/v1/scans?against=none", content=body,
             headers={"Content-Type": "application/gzip"})
    assert r.status_code == 202
    assert wait_done(app, r.json()["id"])["status"] == "done"
    assert scans.asked[0].tarball == body and scans.asked[0].against == "none"
    job = get(app, f"/api/v1/scans/{r.json()['id']}").json()
    assert job["target"].startswith("upload:")
    monkeypatch.setattr(api_module, "MAX_UPLOAD", 100)
    big = post(app, "/api/v1/scans", content=b"\x1f\x8b" + b"0" * 200,
               headers={"Content-Type": "application/gzip"})
    assert big.status_code == 413 and set(big.json()) == {"error"}
    assert post(app, "/api/v1/scans", content=b"",
                headers={"Content-Type": "application/gzip"}).status_code == 422


def test_scan_bodies_are_checked(engine: Engine) -> None:
    app = app_with(engine)
    assert post(app, "/api/v1/scans", content=b"target=chalk@1.0.0",
                headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 415
    for body in (b"{", b"[]", b'{"target": 5}', b'{"target": ""}', b"\xff\xfe"):
        r = post(app, "/api/v1/scans", content=body,
                 headers={"Content-Type": "application/json"})
        assert r.status_code == 422, body


def test_a_full_queue_is_503(engine: Engine) -> None:
    hold = threading.Event()
    app = app_with(engine, FakeScans(hold=hold), queue_size=1)
    try:
        codes = [post(app, "/api/v1/scans", json={"target": f"p@1.0.{i}"}).status_code
                 for i in range(4)]
    finally:
        hold.set()
    # one running (once the worker took it) and one waiting: never more than two accepted
    assert codes[0] == 202 and codes.count(202) <= 2 and codes[-1] == 503


def test_a_write_from_another_origin_is_refused(engine: Engine) -> None:
    app = app_with(engine, token=None)
    r = post(app, "/api/v1/scans", json={"target": "chalk@1.0.0"},
             headers={"Origin": "https://evil.invalid"})
    assert r.status_code == 403 and r.headers["x-frame-options"] == "DENY"
    assert post(app, "/api/v1/scans", json={"target": "chalk@1.0.0"},
                headers={"Origin": "null"}).status_code == 403
    assert post(app, "/api/v1/scans", json={"target": "chalk@1.0.0"},
                headers={"Origin": "http://127.0.0.1:8080"}).status_code == 202


def test_only_loopback_host_names_without_a_token(engine: Engine) -> None:
    app = app_with(engine, token=None, allowed_hosts=["127.0.0.1", "localhost"])
    assert get(app, "/healthz", headers={}).status_code == 200
    r = run(app, lambda c: c.get("/healthz"), base="http://rebound.example.invalid:8080")
    assert r.status_code == 400


def test_a_foreign_host_is_refused_in_one_json_line_on_the_api(engine: Engine) -> None:
    app = app_with(engine, token=None, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])
    evil = {"Host": "evil.example.invalid:18433"}
    r = get(app, "/api/v1/verdicts", headers=evil)
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    assert list(r.json()) == ["error"] and "host" in r.json()["error"].lower()
    assert r.text.count("\n") <= 1 and r.headers["x-frame-options"] == "DENY"
    page = get(app, "/", headers=evil)
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/plain")
    assert len(page.text) < 200 and "\n" not in page.text.strip()
    for bad in ("localhost:80x", "localhost@evil.invalid", "[::1", ""):
        assert get(app, "/api/v1/verdicts", headers={"Host": bad}).status_code == 400
    for good in ("localhost", "LOCALHOST:8080", "127.0.0.1:18433", "[::1]:8080"):
        assert get(app, "/api/v1/verdicts", headers={"Host": good}).status_code == 200, good


def test_post_an_environment(engine: Engine) -> None:
    seen: list[tuple[str, str, bytes]] = []

    def record(label: str, filename: str, body: bytes) -> int:
        seen.append((label, filename, body))
        if b"broken" in body:
            raise UsageError("package-lock.json: not JSON")
        return 3

    app = app_with(engine, record_upload=record)
    lock = '{"lockfileVersion": 3, "packages": {}}'
    r = post(app, "/api/v1/environments",
             json={"label": HOSTILE, "filename": "package-lock.json", "content": lock})
    assert r.status_code == 201 and r.json() == {"label": HOSTILE, "packages": 3}
    assert seen[-1] == (HOSTILE, "package-lock.json", lock.encode())
    doc = {"schema": "chainwatch.inventory/1", "environments": []}
    assert post(app, "/api/v1/environments",
                json={"label": "ci", "document": doc}).status_code == 201
    assert json.loads(seen[-1][2]) == doc
    r = post(app, "/api/v1/environments",
             json={"label": "ci", "filename": "package-lock.json", "content": "broken"})
    assert r.status_code == 422 and r.json()["error"] == "package-lock.json: not JSON"
    for bad in ({"filename": "x", "content": "y"}, {"label": "ci", "filename": "../../x",
                                                    "content": "y"},
                {"label": "ci", "filename": "/etc/passwd", "content": "y"},
                {"label": "x" * 600, "filename": "a", "content": "b"},
                {"label": "ci", "document": []}):
        assert post(app, "/api/v1/environments", json=bad).status_code == 422, bad
    assert len(seen) == 3


def test_read_routes_answer_with_data(engine: Engine) -> None:
    wave(engine)
    put_env(engine, HOSTILE, "2026-09-08T10:00:00+00:00", [("chalk", "9.9.9")])
    app = app_with(engine)
    incidents = get(app, "/api/v1/incidents").json()["items"]
    assert len(incidents) == 1
    ident = incidents[0]["id"]
    brief = get(app, f"/api/v1/incidents/{ident}").json()
    assert brief["schema"] == "chainwatch.brief/1"
    report = get(app, f"/api/v1/incidents/{ident}/report.html")
    assert report.headers["content-type"].startswith("text/html")
    assert "script-src" not in report.headers["content-security-policy"]
    assert "default-src 'none'" in report.headers["content-security-policy"]
    assert "<script>alert(1)" not in report.text
    assert get(app, "/api/v1/incidents/INC-none").status_code == 404
    exposure = get(app, "/api/v1/exposure", params={"package": "chalk@^9.0.0"}).json()
    assert [e["label"] for e in exposure["items"]] == [HOSTILE]
    assert get(app, "/api/v1/exposure").status_code == 422
    assert get(app, "/api/v1/exposure?package=chalk@%3E%3Cbad").status_code == 422
    envs = get(app, "/api/v1/environments").json()
    assert envs["items"][0]["label"] == HOSTILE and envs["items"][0]["packages"] == 1
    assert get(app, "/api/v1/alerts").json() == {"items": [], "next_cursor": None}
    assert get(app, "/api/v1/decisions?action=block").json()["items"] == []
    assert get(app, "/api/v1/decisions?action=boom").status_code == 422


def test_two_users_at_once(engine: Engine) -> None:
    """Two logged-in browsers (session cookies) and a bearer client, in parallel."""
    from datetime import timedelta

    for i in range(30):
        put_verdict(engine, f"p{i}", "1.0.0", "benign", NOW - timedelta(seconds=i))
    auth = Auth(TOKEN)
    app = app_with(engine, auth=auth)
    alice, bob = auth.new_session(), auth.new_session()

    async def user(client: httpx.AsyncClient) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            r = await client.get("/api/v1/verdicts", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            seen += [v["package"] for v in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen

    async def both() -> tuple[list[str], ...]:
        transport = httpx.ASGITransport(app=app)
        clients = [httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080",
                                     cookies={COOKIE: c}) for c in (alice, bob)]
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080",
                                         headers=BEARER))
        try:
            return tuple(await asyncio.gather(*(user(c) for c in clients for _ in range(3))))
        finally:
            for c in clients:
                await c.aclose()

    results = asyncio.run(both())
    expected = [f"p{i}" for i in range(30)]
    assert all(r == expected for r in results)


def test_a_session_cookie_writes_only_with_its_csrf_token(engine: Engine) -> None:
    auth = Auth(TOKEN)
    app = app_with(engine, auth=auth)
    cookie = auth.new_session()
    headers = {"Cookie": f"{COOKIE}={cookie}"}
    r = run(app, lambda c: c.post("/api/v1/scans", json={"target": "chalk@1.0.0"}), headers)
    assert r.status_code == 401

    from starlette.requests import Request
    token = auth.csrf_token(Request({"type": "http", "headers": [
        (b"cookie", f"{COOKIE}={cookie}".encode())]}))
    r = run(app, lambda c: c.post("/api/v1/scans", json={"target": "chalk@1.0.0"}),
            {**headers, CSRF_HEADER: token})
    assert r.status_code == 202


def test_gzip_magic_is_not_needed_to_be_refused_safely(engine: Engine) -> None:
    """A body that is not a tarball still queues (the scanner judges it), bounded in size."""
    scans = FakeScans()
    app = app_with(engine, scans)
    r = post(app, "/api/v1/scans", content=gzip.compress(b"not a tar"),
             headers={"Content-Type": "application/gzip"})
    assert r.status_code == 202


def test_uploaded_bytes_held_by_the_queue_are_bounded(engine: Engine) -> None:
    hold = threading.Event()
    pool = ScanPool(FakeScans(hold=hold), workers=1, queue_size=8, max_held_bytes=100)
    app = create_app(engine, token=TOKEN, scans=pool)
    gz = {"Content-Type": "application/gzip"}
    try:
        first = post(app, "/api/v1/scans", content=b"\x1f\x8b" + b"a" * 58, headers=gz)
        second = post(app, "/api/v1/scans", content=b"\x1f\x8b" + b"b" * 58, headers=gz)
        small = post(app, "/api/v1/scans", json={"target": "chalk@1.0.0"})
    finally:
        hold.set()
    assert first.status_code == 202 and small.status_code == 202
    assert second.status_code == 503 and "uploaded bytes" in second.json()["error"]
    wait_done(app, first.json()["id"])
    assert post(app, "/api/v1/scans", content=b"\x1f\x8b" + b"c" * 58,
                headers=gz).status_code == 202  # released once scanned


def test_only_a_few_large_bodies_are_read_at_once(engine: Engine) -> None:
    app = app_with(engine)
    reading = app.state.api._reading
    taken = 0
    while reading.acquire(blocking=False):
        taken += 1
    try:
        assert taken == api_module.MAX_READING
        r = post(app, "/api/v1/scans", content=b"\x1f\x8b", headers={
            "Content-Type": "application/gzip"})
        assert r.status_code == 503 and r.headers["retry-after"]
        assert post(app, "/api/v1/environments", json={"label": "x", "filename": "a",
                                                       "content": "b"}).status_code == 503
    finally:
        for _ in range(taken):
            reading.release()


def test_guessing_the_token_is_throttled_per_client(engine: Engine) -> None:
    from chainwatch.serve import auth as auth_module

    app = app_with(engine)

    async def guess(client: httpx.AsyncClient) -> list[int]:
        codes = []
        for i in range(auth_module.MAX_FAILURES + 2):
            r = await client.get("/api/v1/verdicts", headers={"Authorization": f"Bearer g{i}"})
            codes.append(r.status_code)
        r = await client.get("/api/v1/verdicts", headers=BEARER)  # even the right one, now
        codes.append(r.status_code)
        return codes

    codes = run(app, guess)
    assert codes[:auth_module.MAX_FAILURES] == [401] * auth_module.MAX_FAILURES
    assert codes[auth_module.MAX_FAILURES:] == [429, 429, 429]
    other = httpx.ASGITransport(app=app, client=("192.0.2.9", 1234))

    async def elsewhere() -> int:
        async with httpx.AsyncClient(transport=other, base_url="http://127.0.0.1:8080") as c:
            return (await c.get("/api/v1/verdicts", headers=BEARER)).status_code

    assert asyncio.run(elsewhere()) == 200  # another client is not locked out


def test_an_uploads_verdict_is_listed_as_one_and_name_at_version_does_not_find_it(
        engine: Engine) -> None:
    key = "sha512-upload+/=="
    put_verdict(engine, "chalk", "5.3.0", "malicious", NOW, key=key, origin="tarball",
                source="upload", baseline_chosen=True)
    app = app_with(engine)
    (row,) = get(app, "/api/v1/verdicts?package=chalk").json()["items"]
    assert (row["key"], row["origin"], row["origin_label"]) == (key, "tarball", "upload")
    missing = get(app, "/api/v1/verdicts/chalk@5.3.0")
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    said = missing.json()["error"]
    assert "keyed by their bytes" in said and "integrity" in said and "key" in said
    assert get(app, f"/api/v1/verdicts/{quote(key, safe='')}").status_code == 200
    assert get(app, "/api/v1/incidents").json()["items"] == []
