"""Who may ask: a bearer token for the API, a login cookie and a CSRF token for the pages.

With no token configured (loopback only) everything is open. With a token, ``/healthz`` is
open, the API needs ``Authorization: Bearer TOKEN`` or a valid session cookie, and the pages
need the session cookie (else they redirect to ``/login``).

The session cookie is ``ID.EXPIRES.MAC``: a random id, its expiry (Unix seconds) and an
HMAC-SHA256 of both under a key derived from the token and a secret drawn when the process
starts, so a restart (or a new token) ends every session and nothing is stored server-side
except the ids of sessions ended by logout before their expiry (bounded). The CSRF token of a
session is an HMAC of its id; with no token configured it is one per-process value (the pages
are then open, but a cross-site form still cannot post without reading a page first).
Every comparison of a secret is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from starlette.requests import Request
from starlette.responses import Response

#: the session cookie (HttpOnly, SameSite=Strict, Secure when served over https)
COOKIE = "chainwatch_session"
#: the header an API client holding only the session cookie sends with a write
CSRF_HEADER = "x-csrf-token"
#: how long a login lasts
SESSION_TTL_S = 12 * 3600
#: at most this many ended-but-unexpired sessions are remembered (the oldest is dropped first)
MAX_REVOKED = 10_000
#: a cookie or header longer than this is refused before any work
MAX_CREDENTIAL = 1024

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _same(expected: str, given: str) -> bool:
    """Constant-time equality of an expected MAC and any string a client sent (non-ASCII too)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))


class Auth:
    """``secret`` and ``session_ttl`` were added to the contract (both optional): a fixed
    secret lets several workers share sessions, and tests shorten the session's life."""

    def __init__(self, token: str | None, *, secret: bytes | None = None,
                 session_ttl: int = SESSION_TTL_S) -> None:
        self.token = token or None
        self.session_ttl = session_ttl
        seed = secret if secret is not None else secrets.token_bytes(32)
        self._key = hmac.new(seed, b"chainwatch-session\0" + (self.token or "").encode(
            "utf-8", "surrogatepass"), hashlib.sha256).digest()
        self._token_digest = _digest(self.token) if self.token else None
        self._revoked: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def required(self) -> bool:
        """Whether a token is configured (else everything is open)."""
        return self.token is not None

    # -- the token --------------------------------------------------------------------------
    def token_matches(self, submitted: str) -> bool:
        """The login form's check (constant-time). False when no token is configured."""
        if self._token_digest is None or not isinstance(submitted, str):
            return False
        if len(submitted) > MAX_CREDENTIAL:
            return False
        return hmac.compare_digest(_digest(submitted), self._token_digest)

    def bearer_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    # -- sessions ---------------------------------------------------------------------------
    def _mac(self, message: str) -> str:
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def _session_id(self, request: Request) -> str | None:
        """The id of the request's session when its cookie is genuine and unexpired."""
        value = request.cookies.get(COOKIE)
        if not value or len(value) > MAX_CREDENTIAL:
            return None
        parts = value.split(".")
        if len(parts) != 3:
            return None
        sid, expires, mac = parts
        if not _same(self._mac(f"{sid}.{expires}"), mac):
            return None
        if not expires.isdigit() or int(expires) <= time.time():
            return None
        with self._lock:
            if sid in self._revoked:
                return None
        return sid

    def new_session(self) -> str:
        """A new session cookie's value."""
        sid = secrets.token_urlsafe(18)
        expires = int(time.time()) + self.session_ttl
        return f"{sid}.{expires}.{self._mac(f'{sid}.{expires}')}"

    def start_session(self, response: Response, request: Request | None = None) -> None:
        """Set the session cookie on ``response`` after a successful login (``Secure`` when
        ``request`` came over https; ``request`` was added to the contract, optional)."""
        response.set_cookie(COOKIE, self.new_session(), max_age=self.session_ttl, path="/",
                            httponly=True, samesite="strict",
                            secure=request is not None and request.url.scheme == "https")

    def end_session(self, response: Response, request: Request | None = None) -> None:
        """Clear the cookie; with ``request`` (added, optional), its session is also refused
        from now on, should a copy of the cookie survive."""
        if request is not None and (sid := self._session_id(request)) is not None:
            expires = int(request.cookies[COOKIE].split(".")[1])
            with self._lock:
                now = time.time()
                for old in [s for s, e in self._revoked.items() if e <= now]:
                    del self._revoked[old]
                while len(self._revoked) >= MAX_REVOKED:
                    del self._revoked[next(iter(self._revoked))]
                self._revoked[sid] = expires
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request is not None and request.url.scheme == "https")

    # -- who may ask ------------------------------------------------------------------------
    def page_allowed(self, request: Request) -> bool:
        """A valid session cookie (or no token configured)."""
        return not self.required or self._session_id(request) is not None

    def api_allowed(self, request: Request) -> bool:
        """A bearer token or a valid session cookie (constant-time comparison). A write
        (POST and the like) on the cookie alone also needs the session's CSRF token in the
        ``X-CSRF-Token`` header, so another site cannot make a logged-in browser write."""
        if not self.required:
            return True
        if self.bearer_ok(request):
            return True
        if self._session_id(request) is None:
            return False
        if request.method in _SAFE_METHODS:
            return True
        return self.csrf_ok(request, request.headers.get(CSRF_HEADER))

    # -- CSRF -------------------------------------------------------------------------------
    def csrf_token(self, request: Request) -> str:
        """The token every form of this session must carry (tied to the session)."""
        sid = self._session_id(request)
        return self._mac(f"csrf:{sid}" if sid else "csrf:anonymous")

    def csrf_ok(self, request: Request, submitted: str | None) -> bool:
        if not submitted or len(submitted) > MAX_CREDENTIAL:
            return False
        sid = self._session_id(request)
        if sid is None and self.required:
            return False
        return _same(self.csrf_token(request), submitted)
