"""serve/auth.py: bearer token, signed session cookie, CSRF token tied to the session."""

from __future__ import annotations

import time

import pytest
from starlette.requests import Request
from starlette.responses import Response

from chainwatch.serve.auth import COOKIE, CSRF_HEADER, Auth

TOKEN = "s3cret-token-for-tests"


def request(method: str = "GET", headers: dict[str, str] | None = None,
            cookie: str | None = None, scheme: str = "http") -> Request:
    raw = [(k.lower().encode(), v.encode("utf-8")) for k, v in (headers or {}).items()]
    if cookie is not None:
        raw.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    return Request({"type": "http", "method": method, "path": "/", "headers": raw,
                    "scheme": scheme, "server": ("127.0.0.1", 8080), "query_string": b""})


def login(auth: Auth, scheme: str = "http") -> tuple[str, str]:
    """(cookie value, Set-Cookie header) of a new session."""
    response = Response()
    auth.start_session(response, request(scheme=scheme))
    header = response.headers["set-cookie"]
    value = header.split(";")[0].split("=", 1)[1]
    return value, header


def test_no_token_is_open() -> None:
    auth = Auth(None)
    assert auth.api_allowed(request("POST")) and auth.page_allowed(request())
    assert not auth.token_matches("")  # nothing to log in with


def test_bearer_token() -> None:
    auth = Auth(TOKEN)
    assert auth.api_allowed(request(headers={"Authorization": f"Bearer {TOKEN}"}))
    assert auth.api_allowed(request("POST", {"Authorization": f"bearer  {TOKEN} "}))
    for bad in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer ", TOKEN, "Bearer é" * 3,
                "Bearer " + "a" * 5000):
        assert not auth.api_allowed(request(headers={"Authorization": bad})), bad
    assert not auth.api_allowed(request())
    assert not auth.page_allowed(request(headers={"Authorization": f"Bearer {TOKEN}"}))


def test_session_cookie_attributes() -> None:
    auth = Auth(TOKEN)
    _, header = login(auth)
    lowered = header.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
    assert "secure" not in lowered
    _, header = login(auth, scheme="https")
    assert "; secure" in header.lower()


def test_session_cookie_is_checked() -> None:
    auth = Auth(TOKEN)
    value, _ = login(auth)
    assert auth.page_allowed(request(cookie=value))
    assert auth.api_allowed(request(cookie=value))
    sid, expires, mac = value.split(".")
    forged = [f"{sid}.{int(expires) + 10**6}.{mac}",  # extended expiry
              f"{sid}x.{expires}.{mac}", f"{sid}.{expires}.{'0' * len(mac)}", "a.b",
              value + ".x", "é.1.é", "x" * 5000]
    for bad in forged:
        assert not auth.page_allowed(request(cookie=bad)), bad
    # another process (or another token) signs with another key
    assert not Auth(TOKEN).page_allowed(request(cookie=value))
    assert not Auth("other", secret=b"k").page_allowed(
        request(cookie=login(Auth(TOKEN, secret=b"k"))[0]))
    assert Auth(TOKEN, secret=b"k").page_allowed(request(cookie=login(Auth(TOKEN, secret=b"k"))[0]))


def test_session_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = Auth(TOKEN, session_ttl=60)
    value, _ = login(auth)
    assert auth.page_allowed(request(cookie=value))
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert not auth.page_allowed(request(cookie=value))


def test_logout_revokes_the_session() -> None:
    auth = Auth(TOKEN)
    value, _ = login(auth)
    other, _ = login(auth)
    response = Response()
    auth.end_session(response, request(cookie=value))
    assert f"{COOKIE}=" in response.headers["set-cookie"]
    assert "max-age=0" in response.headers["set-cookie"].lower()
    assert not auth.page_allowed(request(cookie=value))
    assert auth.page_allowed(request(cookie=other))


def test_csrf_is_tied_to_the_session() -> None:
    auth = Auth(TOKEN)
    a, _ = login(auth)
    b, _ = login(auth)
    ta, tb = auth.csrf_token(request(cookie=a)), auth.csrf_token(request(cookie=b))
    assert ta != tb
    assert auth.csrf_ok(request("POST", cookie=a), ta)
    assert not auth.csrf_ok(request("POST", cookie=a), tb)
    assert not auth.csrf_ok(request("POST"), ta)  # no session
    for bad in (None, "", "é", ta + "0", "x" * 5000):
        assert not auth.csrf_ok(request("POST", cookie=a), bad)


def test_a_cookie_alone_cannot_write_through_the_api() -> None:
    auth = Auth(TOKEN)
    value, _ = login(auth)
    token = auth.csrf_token(request(cookie=value))
    assert auth.api_allowed(request("GET", cookie=value))
    assert not auth.api_allowed(request("POST", cookie=value))
    assert auth.api_allowed(request("POST", {CSRF_HEADER: token}, cookie=value))


def test_without_a_token_csrf_still_needs_the_page_value() -> None:
    auth = Auth(None)
    token = auth.csrf_token(request())
    assert auth.csrf_ok(request("POST"), token)
    assert not auth.csrf_ok(request("POST"), "guess")
    assert Auth(None).csrf_token(request()) != token  # per process
