"""Who may ask: a bearer token for the API, a login cookie and a CSRF token for the pages.

With no token configured (loopback only) everything is open. With a token, ``/healthz`` is
open, the API needs ``Authorization: Bearer TOKEN`` or a valid session cookie, and the pages
need the session cookie (else they redirect to ``/login``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

#: the session cookie (HttpOnly, SameSite=Strict, Secure when served over https)
COOKIE = "chainwatch_session"


class Auth:
    def __init__(self, token: str | None) -> None:
        self.token = token

    def api_allowed(self, request: Request) -> bool:
        """A bearer token or a valid session cookie (constant-time comparison)."""
        raise NotImplementedError

    def page_allowed(self, request: Request) -> bool:
        """A valid session cookie (or no token configured)."""
        raise NotImplementedError

    def token_matches(self, submitted: str) -> bool:
        """The login form's check (constant-time)."""
        raise NotImplementedError

    def start_session(self, response: Response) -> None:
        """Set the session cookie on ``response`` after a successful login."""
        raise NotImplementedError

    def end_session(self, response: Response) -> None:
        raise NotImplementedError

    def csrf_token(self, request: Request) -> str:
        """The token every form of this session must carry (tied to the session)."""
        raise NotImplementedError

    def csrf_ok(self, request: Request, submitted: str | None) -> bool:
        raise NotImplementedError
