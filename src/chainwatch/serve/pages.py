"""The server-rendered pages (Jinja2, autoescaped, no external assets, strict CSP).

Every page works without JavaScript; the one script (``/static/refresh.js``, same origin)
only refreshes the overview's latest alerts. With a token configured, every page but
``/login`` needs the session cookie, and every form that changes state (log in, log out)
carries the session's CSRF token and is refused without it, or when the browser says the
request came from another site (``Origin`` / ``Sec-Fetch-Site``). Without a token there is no
session: the forms (the scan form) then carry a random per-browser value that must equal the
``SameSite=Strict`` cookie ``FORM_COOKIE`` (double submit), never an empty one.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, PackageLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from chainwatch.serve import charts, views
from chainwatch.serve.auth import Auth
from chainwatch.serve.queries import MAX_CURSOR, MAX_LIMIT, ReadModel, missing_verdict
from chainwatch.serve.scans import QueueFull, ScanPool, ScanRequest, target_problem

#: every page's policy: nothing from another origin, no inline script or style, no framing
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # not no-referrer: with it, Chromium sends "Origin: null" on form posts, which the
    # same-origin check must refuse; same-origin still sends nothing to other sites
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
LEVELS = ("benign", "suspicious", "malicious")
ACTIONS = ("block", "warn")
#: a form body larger than this is refused (the login form is a few hundred bytes)
MAX_FORM = 8192
#: the longest query value a page reads (package names, specs, cursors)
MAX_QUERY = 512
PAGE_SIZE = 50
#: exposure rows shown on the page (the API answers all of them, up to its own bound)
EXPOSURE_ROWS = 500
#: a verdict key or incident id longer than this names nothing (verdict keys are <= 256)
MAX_KEY = 300
#: as many alerts as the overview shows (ReadModel.overview's latest_alerts)
LATEST_ALERTS = 10
#: the login form's own CSRF cookie: before a session exists, Auth's CSRF token is one value
#: for every visitor, so the login form also carries a random value that must equal this
#: cookie's (double submit; SameSite=Strict, so another site's form never sends it)
LOGIN_COOKIE = "chainwatch_login"
#: with no token configured there is no session, so the pages' forms (the scan form) carry a
#: random per-browser value that must equal this cookie's (double submit, SameSite=Strict:
#: another site's form never sends it, and cannot read the value from a page)
FORM_COOKIE = "chainwatch_form"
#: the form cookie's value: 32 URL-safe characters (anything else is replaced)
_FORM_NONCE_LEN = 32
_NONCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
STATIC = Path(__file__).parent / "static"

_env = Environment(loader=PackageLoader("chainwatch.serve", "templates"), autoescape=True,
                   trim_blocks=True, lstrip_blocks=True)
_env.globals["link"] = views.link_path
_env.globals["when"] = views.when
_env.filters["shown"] = views.text

Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    """A query the page cannot answer: shown as one line with status 400."""


def render(request: Request, auth: Auth, name: str, status: int = 200,
           **context: Any) -> HTMLResponse:
    """A template with the layout's context (login state, the CSRF token) and the headers."""
    allowed = auth.token is None or auth.page_allowed(request)
    signed_in = auth.token is not None and allowed
    nonce = None if auth.token is not None else _form_nonce(request)
    html = _env.get_template(name).render(
        request_path=request.url.path, signed_in=signed_in, show_nav=allowed,
        csrf=auth.csrf_token(request) if nonce is None else nonce, **context)
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if nonce is not None and request.cookies.get(FORM_COOKIE) != nonce:
        response.set_cookie(FORM_COOKIE, nonce, path="/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
    return response


def _valid_nonce(value: str | None) -> bool:
    return (value is not None and len(value) == _FORM_NONCE_LEN
            and all(c in _NONCE_CHARS for c in value))


def _form_nonce(request: Request) -> str:
    """The browser's form cookie value when it has a well-formed one, else a new one."""
    value = request.cookies.get(FORM_COOKIE)
    return value if value is not None and _valid_nonce(value) else secrets.token_urlsafe(24)


def form_csrf_ok(request: Request, auth: Auth, submitted: str | None) -> bool:
    """A state-changing form's CSRF check: the session's token when a token is configured,
    else the double-submit form cookie (never an empty or missing value)."""
    if auth.token is not None:
        return auth.csrf_ok(request, submitted)
    cookie = request.cookies.get(FORM_COOKIE)
    return (_valid_nonce(cookie) and isinstance(submitted, str) and _valid_nonce(submitted)
            and hmac.compare_digest(str(cookie).encode(), str(submitted).encode()))


def _query(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None or not value.strip():
        return None
    limit = MAX_CURSOR if name == "cursor" else MAX_QUERY
    if len(value) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters")
    return value.strip()


def _limit(request: Request) -> int:
    raw = _query(request, "limit")
    if raw is None:
        return PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a number from 1 to {MAX_LIMIT}")
    return int(raw)


def _next_link(request: Request, cursor: str | None) -> str | None:
    """The link to the next (older) page: this page's query with the new cursor."""
    if cursor is None:
        return None
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    return request.url.path + "?" + urlencode([*params, ("cursor", cursor)])


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path on this site only (never //host or /\\host)."""
    if (not value or not value.startswith("/") or value.startswith(("//", "/\\"))
            or any(c in value for c in "\r\n\t\\") or len(value) > MAX_QUERY):
        return "/"
    return value


def _same_site(request: Request) -> bool:
    """False when the browser tells us the form was posted from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        host = request.headers.get("host", "")
        return origin in (f"http://{host}", f"https://{host}")
    return origin != "null"


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (bounded; no multipart parser needed)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise BadRequest(f"the form is larger than {MAX_FORM} bytes")
    if not body:
        return {}
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest("the form must be sent as application/x-www-form-urlencoded")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("the form could not be read") from exc
    return {k: v[0] for k, v in parsed.items()}


def routes(model: ReadModel, auth: Auth) -> list[BaseRoute]:
    """Every page route, including ``/login`` and ``/logout``."""

    def page(name: str, fn: Callable[[Request], Awaitable[Response]]) -> Handler:
        async def handler(request: Request) -> Response:
            if not auth.page_allowed(request):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/login?" + urlencode({"next": safe_next(target)}), 303,
                                        headers=HEADERS)
            try:
                return await fn(request)
            except (BadRequest, ValueError) as exc:
                return _render(request, "error.html", 400, title="Bad request",
                               message=views.text(str(exc), 300))
        handler.__name__ = name
        return handler

    def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return render(request, auth, name, status, **context)

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The read model blocks on the database: keep the event loop free."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def overview(request: Request) -> Response:
        o = await call(model.overview)
        return _render(request, "overview.html", title="Overview", o=o,
                       today=o.verdicts_per_day[-1] if o.verdicts_per_day else None,
                       alerts=[views.alert(a) for a in o.latest_alerts],
                       verdicts_chart=charts.verdicts_chart(o.verdicts_per_day),
                       latency_chart=charts.latency_chart(o.latency_per_day))

    async def latest_alerts(request: Request) -> Response:
        """The overview's alert list alone, for refresh.js (the overview's other queries are
        not repeated every 30 seconds per open tab)."""
        page_ = await call(model.alerts, limit=LATEST_ALERTS)
        return _render(request, "alerts_fragment.html",
                       alerts=[views.alert(a) for a in page_.items])

    async def verdict_list(request: Request) -> Response:
        level = _query(request, "level")
        if level is not None and level not in LEVELS:
            raise BadRequest(f"level must be one of {', '.join(LEVELS)}")
        package, since = _query(request, "package"), _query(request, "since")
        page_ = await call(model.verdicts, package=package, level=level, since=since,
                           limit=_limit(request), cursor=_query(request, "cursor"))
        return _render(request, "verdicts.html", title="Verdicts", rows=page_.items,
                       can_scan=callable(getattr(request.app.state, "scans", None)),
                       levels=LEVELS, package=package or "", level=level or "",
                       since=since or "", next=_next_link(request, page_.next_cursor))

    async def verdict_page(request: Request) -> Response:
        key = request.path_params["key"]
        doc = await call(model.verdict, key) if len(key) <= MAX_KEY else None
        if doc is None:
            return _render(request, "error.html", 404, title="Not found",
                           message=missing_verdict(views.text(key, 300)))
        v = views.verdict(doc)
        return _render(request, "verdict.html", title=f"Verdict {v.package}@{v.version}",
                       v=v, key=key)

    async def alert_list(request: Request) -> Response:
        page_ = await call(model.alerts, limit=_limit(request), cursor=_query(request, "cursor"))
        return _render(request, "alerts.html", title="Alerts",
                       alerts=[views.alert(a) for a in page_.items],
                       next=_next_link(request, page_.next_cursor))

    async def incident_list(request: Request) -> Response:
        rows = await call(model.incidents)
        return _render(request, "incidents.html", title="Incidents", rows=rows)

    async def incident_page(request: Request) -> Response:
        incident_id = request.path_params["id"]
        doc = await call(model.incident, incident_id) if len(incident_id) <= MAX_KEY else None
        if doc is None:
            return _render(request, "error.html", 404, title="Not found",
                           message=f"no incident {views.text(incident_id, 200)}")
        return _render(request, "incident.html", title="Incident", b=views.brief(doc),
                       incident_id=incident_id)

    async def exposure(request: Request) -> Response:
        spec = _query(request, "package")
        rows, error = None, None
        if spec is not None:
            try:
                rows = await call(model.exposure, spec)
            except ValueError as exc:
                error = views.text(str(exc), 300)
        return _render(request, "exposure.html", 400 if error else 200, title="Exposure",
                       spec=spec or "", rows=rows, error=error, shown_rows=EXPOSURE_ROWS)

    async def environments(request: Request) -> Response:
        page_ = await call(model.environment_labels, limit=_limit(request),
                           cursor=_query(request, "cursor"))
        return _render(request, "environments.html", title="Environments", rows=page_.items,
                       next=_next_link(request, page_.next_cursor))

    async def decisions(request: Request) -> Response:
        action = _query(request, "action")
        if action is not None and action not in ACTIONS:
            raise BadRequest(f"action must be one of {', '.join(ACTIONS)}")
        page_ = await call(model.decisions, action=action, limit=_limit(request),
                           cursor=_query(request, "cursor"))
        return _render(request, "decisions.html", title="Gate decisions",
                       rows=views.repeats(page_.items),
                       actions=ACTIONS, action=action or "",
                       next=_next_link(request, page_.next_cursor))

    def login_page(request: Request, next_: str, status: int = 200,
                   error: str | None = None) -> Response:
        nonce = secrets.token_urlsafe(24)
        response = _render(request, "login.html", status, title="Log in", next=next_,
                           nonce=nonce, error=error)
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/login", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    def login_form_ok(request: Request, form: dict[str, str]) -> bool:
        nonce, sent = request.cookies.get(LOGIN_COOKIE, ""), form.get("nonce", "")
        return (_same_site(request) and bool(nonce) and len(sent) < 200
                and hmac.compare_digest(nonce.encode(), sent.encode())
                and hmac.compare_digest(auth.csrf_token(request).encode(),
                                        form.get("csrf", "").encode()))

    def scan_pool(request: Request) -> ScanPool | None:
        """The app's scan pool (``app.state.scans``, made on first use), if it has one."""
        make = getattr(request.app.state, "scans", None)
        return make() if callable(make) else None

    async def submit_scan(request: Request) -> Response:
        if not auth.page_allowed(request):
            return RedirectResponse("/login", 303, headers=HEADERS)
        form = await _form(request)
        if not _same_site(request) or not form_csrf_ok(request, auth, form.get("csrf")):
            return _render(request, "error.html", 403, title="Refused",
                           message="the scan form was not sent from this site")
        target, against = form.get("target", "").strip(), form.get("against", "").strip()
        for field_, value in (("target", target), ("against", against)):
            if (value or field_ == "target") and (problem := target_problem(value)):
                raise BadRequest(f"{field_}: {problem}")
        if against == target:
            raise BadRequest("against: the target itself; leave it empty to judge the release "
                             "against its registry history")
        pool = await call(scan_pool, request)
        if pool is None:
            return _render(request, "error.html", 503, title="No scanner",
                           message="this server has no scanner")
        try:
            job = pool.submit(ScanRequest(target=target, against=against or None))
        except QueueFull as exc:
            return _render(request, "error.html", 503, title="Busy", message=str(exc))
        return RedirectResponse(views.link_path("scans", job.id), 303, headers=HEADERS)

    async def scan_status(request: Request) -> Response:
        ident = request.path_params["id"]
        pool = scan_pool(request)
        job = pool.get(ident) if pool is not None and len(ident) <= 64 else None
        if job is None:
            return _render(request, "error.html", 404, title="Not found",
                           message="no such scan (finished scans are forgotten after a while; "
                                   "their verdicts stay in the verdict list)")
        if job.status == "done" and job.key is not None and job.note is None:
            return RedirectResponse(views.link_path("verdicts", job.key), 303, headers=HEADERS)
        # done but not kept (against a chosen baseline where a verdict is stored): say so,
        # with a link to what verdict memory still says
        return _render(request, "scan.html", title="Scan",
                       target=views.text(job.request.target or "an uploaded tarball", 300),
                       against=views.text(job.request.against, 300), job_status=job.status,
                       error=views.text(job.error, 500), note=views.text(job.note, 600),
                       stored=views.link_path("verdicts", job.key) if job.key else None)

    async def login_form(request: Request) -> Response:
        if auth.token is None:
            return RedirectResponse("/", 303, headers=HEADERS)
        return login_page(request, safe_next(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        if auth.token is None:
            return RedirectResponse("/", 303, headers=HEADERS)
        try:
            form = await _form(request)
        except BadRequest as exc:
            return _render(request, "error.html", 400, title="Bad request", message=str(exc))
        if not login_form_ok(request, form):
            return _render(request, "error.html", 403, title="Refused",
                           message="the form was not sent from this site's login page; "
                                   "open the login page and try again")
        next_ = safe_next(form.get("next"))
        if auth.locked_out(request):
            return login_page(request, next_, 429, "too many wrong tokens from your address; "
                                                   "wait a minute and try again")
        if not auth.token_matches(form.get("token", "")):
            auth.failed(request)  # counted with the API's wrong tokens: 429 after 20 a minute
            return login_page(request, next_, 401,
                              "that token is not the one this server was started with")
        response = RedirectResponse(next_, 303, headers=HEADERS)
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        auth.start_session(response, request)
        return response

    async def logout(request: Request) -> Response:
        try:
            form = await _form(request)
        except BadRequest as exc:
            return _render(request, "error.html", 400, title="Bad request", message=str(exc))
        if not _same_site(request) or not form_csrf_ok(request, auth, form.get("csrf")):
            return _render(request, "error.html", 403, title="Refused",
                           message="the logout form was not sent from this site")
        response = RedirectResponse("/login" if auth.token else "/", 303, headers=HEADERS)
        auth.end_session(response, request)
        return response

    return [
        Route("/", page("overview", overview)),
        Route("/overview/alerts", page("latest_alerts", latest_alerts)),
        Route("/verdicts", page("verdicts", verdict_list)),
        Route("/verdicts/{key:path}", page("verdict", verdict_page)),
        Route("/scans", page("submit_scan", submit_scan), methods=["POST"]),
        Route("/scans/{id}", page("scan", scan_status)),
        Route("/alerts", page("alerts", alert_list)),
        Route("/incidents", page("incidents", incident_list)),
        Route("/incidents/{id}", page("incident", incident_page)),
        Route("/exposure", page("exposure", exposure)),
        Route("/environments", page("environments", environments)),
        Route("/decisions", page("decisions", decisions)),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
