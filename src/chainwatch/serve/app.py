"""The Starlette application: the API, the pages, ``/healthz``, and what guards them all.

Every response carries the security headers (a strict CSP with no inline script, nosniff,
no framing, no referrer, no caching). A write whose ``Origin`` is another site is refused
before it reaches a route. Without a token, only loopback host names are answered (a DNS
rebinding page cannot reach the server under its own name). API errors are one JSON line; no
traceback ever reaches a client (it goes to the server's log).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, event
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainwatch.intel.base import KnownBadSource
from chainwatch.serve import pages
from chainwatch.serve.api import Api, error_response, failure, openapi
from chainwatch.serve.auth import Auth
from chainwatch.serve.queries import ReadModel
from chainwatch.serve.scans import ScanPool

log = logging.getLogger("chainwatch.serve")

#: the policy of every page: nothing from another origin, no inline script, no framing
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}
#: the host names a server without a token answers to
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
#: how long SQLite waits for another writer (the watcher) before a query gives up
BUSY_TIMEOUT_MS = 30_000

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Guard:
    """Pure ASGI (so streamed answers such as server-sent events pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if scope["method"] in _UNSAFE and not _same_origin(headers):
            response = error_response(403, "a write from another site is refused")
            await self._secured(response)(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.decode("latin-1").lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items() if k not in have]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_secured)

    @staticmethod
    def _secured(response: Response) -> Response:
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)
        return response


def _same_origin(headers: dict[str, str]) -> bool:
    """No ``Origin`` (not a browser, or a same-origin GET), or one naming this host; and no
    ``Sec-Fetch-Site`` saying the request comes from another site (a browser that sends no
    ``Origin`` still says so)."""
    if headers.get("sec-fetch-site", "").strip().lower() in ("cross-site", "same-site"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


def patient(engine: Engine) -> None:
    """Let SQLite wait for a concurrent writer (the watcher) instead of failing at once."""
    if engine.dialect.name != "sqlite" or getattr(engine, "_chainwatch_patient", False):
        return

    @event.listens_for(engine, "connect")
    def _busy(conn: Any, _: Any) -> None:
        cursor = conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    engine.pool.dispose()  # connections opened before now get the pragma when reopened
    engine._chainwatch_patient = True  # type: ignore[attr-defined]


def _api_path(request: Request) -> bool:
    return _is_api(request.url.path)


def _is_api(path: str) -> bool:
    return path.startswith(("/api/", "/openapi.json", "/healthz"))


def _host_name(value: str | None) -> str | None:
    """The name in a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lower-cased;
    None when it is missing or malformed."""
    if not value:
        return None
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[:end + 1], value[end + 1:]
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit() and len(rest) <= 6):
        return None
    return name or None


class HostGuard:
    """Answer only requests whose ``Host`` names this server (a DNS-rebinding page cannot
    reach it under its own name). A refusal is ``400``: one JSON line on the API, a short
    plain page elsewhere."""

    DETAIL = "this server answers only to its own host names (Host header refused)"

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers", [])).get(b"host")
        if _host_name(raw.decode("latin-1") if raw is not None else None) in self.allowed:
            await self.app(scope, receive, send)
            return
        response: Response
        if _is_api(str(scope.get("path", ""))):
            response = error_response(400, self.DETAIL)
        else:
            response = PlainTextResponse(self.DETAIL, 400)
        await response(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "error"
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such route: {request.url.path[:200]}"
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        detail = f"{request.method[:10]} is not allowed here"
    if _api_path(request):
        return error_response(exc.status_code, detail, exc.headers)
    return PlainTextResponse(detail, exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    response = failure(request, exc)
    if _api_path(request):
        return response
    detail = json.loads(bytes(response.body))["error"]
    return PlainTextResponse(detail, response.status_code,
                             headers={k: v for k, v in response.headers.items()
                                      if k == "retry-after"})


def create_app(engine: Engine, *, token: str | None,
               scans: ScanPool | Callable[[], ScanPool] | None = None,
               known_bad: KnownBadSource | None = None,
               allowed_hosts: Sequence[str] | None = None,
               record_upload: Callable[[str, str, bytes], int] | None = None,
               auth: Auth | None = None) -> Starlette:
    """The application over ``engine``. ``scans`` is the scan pool (or what makes it on the
    first submission; by default a registry scanner with the user's npm configuration).
    ``allowed_hosts`` limits the Host names answered (None: any); ``record_upload`` defaults to
    ``Fleet.record_upload``."""
    patient(engine)
    model = ReadModel(engine, known_bad=known_bad)
    auth = auth or Auth(token)
    pool_lock = threading.Lock()
    made: list[ScanPool] = []

    def pool() -> ScanPool:
        if isinstance(scans, ScanPool):
            return scans
        with pool_lock:
            if not made:
                made.append(scans() if scans is not None else _default_pool(engine, known_bad))
            return made[0]

    fleets: list[Any] = []

    def upload(label: str, filename: str, body: bytes) -> int:
        if record_upload is not None:
            return record_upload(label, filename, body)
        with pool_lock:
            if not fleets:
                from chainwatch.fleet import Fleet

                fleets.append(Fleet(engine.url.render_as_string(hide_password=False)))
        return int(fleets[0].record_upload(label, filename, body))

    api = Api(model, auth, pool, upload)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def spec(request: Request) -> Response:
        return JSONResponse(openapi())

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", spec, methods=["GET"]),
        *api.routes(),
        *pages.routes(model, auth),
    ]
    middleware = [Middleware(Guard)]
    if allowed_hosts is not None:
        middleware.append(Middleware(HostGuard, allowed_hosts=list(allowed_hosts)))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for p in made:
            p.close()

    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: _http_error, Exception: _server_error},
                    lifespan=lifespan)
    app.router.redirect_slashes = False  # no redirect built from a path a stranger wrote
    app.state.model = model
    app.state.auth = auth
    app.state.scans = pool
    app.state.api = api
    return app


def _default_pool(engine: Engine, known_bad: KnownBadSource | None) -> ScanPool:
    from chainwatch.registry import NpmConfig, RegistryClient
    from chainwatch.serve.scans import registry_scan

    scan, _close = registry_scan(engine, RegistryClient(NpmConfig.load()), known_bad)
    return ScanPool(scan, workers=2)
