"""The JSON API under ``/api/v1`` and its OpenAPI description.

Every route answers JSON (the incident report: HTML); every error is ``{"error": "one line"}``
with its status (401, 404, 405, 413, 415, 422, 503). Query parameters are bounded before they
reach the database: ``limit`` is 1..MAX_LIMIT, ``cursor`` is the opaque string a page returned,
``since`` an ISO 8601 date or time, a package name what npm accepts. Writes take JSON (or, for
a scan, a gzip tarball) and nothing else, so a cross-site HTML form cannot post them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chainwatch.serve.auth import Auth
from chainwatch.serve.queries import MAX_CURSOR, MAX_LIMIT, Page, ReadModel, missing_verdict
from chainwatch.serve.scans import MAX_UPLOAD, QueueFull, ScanPool, ScanRequest, target_problem

log = logging.getLogger("chainwatch.serve")

PREFIX = "/api/v1"
#: the largest JSON body a write takes (a posted lockfile included)
MAX_JSON = 16 * 1024 * 1024
#: the most characters of an environment label
MAX_LABEL = 512
#: large bodies (tarballs, lockfiles) read at once
MAX_READING = 4
#: the most characters of a posted file name
MAX_FILENAME = 256

Endpoint = Callable[[Request], Awaitable[Response]]


class ApiError(HTTPException):
    """An error the API answers as ``{"error": detail}``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, " ".join(detail.split())[:500], headers)


class ApiJSON(JSONResponse):
    """JSON as ASCII: text a package author controls (a lone surrogate from a file name, a
    right-to-left override) travels as ``\\uXXXX`` escapes and can never break the encoding."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False,
                          separators=(",", ":")).encode("ascii")


def error_response(status: int, detail: str,
                   headers: Mapping[str, str] | None = None) -> Response:
    return ApiJSON({"error": detail}, status, headers=headers)


def failure(request: Request, exc: Exception) -> Response:
    """An unexpected error as one line: 503 when the database is busy or unreachable, else
    500; the details go to the server's log only."""
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, OperationalError):
        log.warning("database error on %s: %s", request.url.path,
                    " ".join(str(exc).split())[:300])
        return error_response(503, "the database is busy or unreachable; retry",
                              {"Retry-After": "2"})
    log.error("error on %s", request.url.path, exc_info=exc)
    return error_response(500, "internal error (see the server's log)")


def _dump(value: Any) -> Any:
    """Rows as plain JSON data (dataclasses, pages, tuples)."""
    if isinstance(value, Page):
        return {"items": [_dump(i) for i in value.items], "next_cursor": value.next_cursor}
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, list):
        return [_dump(i) for i in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _json(value: Any, status: int = 200) -> Response:
    return ApiJSON(_dump(value), status)


# -- parameters --------------------------------------------------------------------------------
def _param(request: Request, name: str, max_len: int = 512) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ApiError(422, f"{name}: give it once")
    if not values or values[0] == "":
        return None
    if len(values[0]) > max_len:
        raise ApiError(422, f"{name}: longer than {max_len} characters")
    return values[0]


def _limit(request: Request) -> int:
    raw = _param(request, "limit", 12)
    if raw is None:
        return 50
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(422, f"limit: a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _paging(request: Request) -> dict[str, Any]:
    return {"limit": _limit(request), "cursor": _param(request, "cursor", MAX_CURSOR)}


async def _read(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A read-model call off the event loop; its ValueError is the client's 422."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except UnicodeError:  # a lone surrogate smuggled in (a cursor's JSON): no codec message
        raise ApiError(422, "a parameter holds text that is not valid Unicode") from None
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _json_body(request: Request) -> dict[str, Any]:
    if _media(request) != "application/json":
        raise ApiError(415, "send the body as application/json")
    raw = await _body(request, MAX_JSON)
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeError):
        raise ApiError(422, "the body is not JSON") from None
    except RecursionError:  # thousands of nested [ or {: refused, never a 500
        raise ApiError(422, "the body is JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise ApiError(422, "the body is not a JSON object")
    return value


def _string(body: dict[str, Any], key: str, max_len: int, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ApiError(422, f"{key}: a string of 1 to {max_len} characters")
    return value


class Api:
    """The routes, over one read model, one auth and one scan pool (made on first use)."""

    def __init__(self, model: ReadModel, auth: Auth,
                 scans: Callable[[], ScanPool],
                 record_upload: Callable[[str, str, bytes], int]) -> None:
        self.model = model
        self.auth = auth
        self._scans = scans
        self._record_upload = record_upload
        #: bodies of at most this many large writes are read at once (memory bound)
        self._reading = threading.BoundedSemaphore(MAX_READING)

    def guarded(self, endpoint: Endpoint) -> Endpoint:
        async def check(request: Request) -> Response:
            if self.auth.required and self.auth.locked_out(request):
                raise ApiError(429, "too many wrong tokens; wait a minute",
                               {"Retry-After": "60"})
            if not self.auth.api_allowed(request):
                if "authorization" in request.headers:
                    self.auth.failed(request)
                raise ApiError(401, "a valid bearer token is required",
                               {"WWW-Authenticate": 'Bearer realm="chainwatch"'})
            try:
                return await endpoint(request)
            except HTTPException:
                raise
            except Exception as exc:  # answered here: no traceback to the client or the ASGI server
                return failure(request, exc)

        check.__name__ = endpoint.__name__
        check.__doc__ = endpoint.__doc__
        return check

    def routes(self) -> list[BaseRoute]:
        g = self.guarded
        return [
            Route(f"{PREFIX}/verdicts", g(self.verdicts), methods=["GET"]),
            Route(f"{PREFIX}/verdicts/{{key:path}}", g(self.verdict), methods=["GET"]),
            Route(f"{PREFIX}/scans", g(self.submit_scan), methods=["POST"]),
            Route(f"{PREFIX}/scans/{{id}}", g(self.scan_status), methods=["GET"]),
            Route(f"{PREFIX}/alerts", g(self.alerts), methods=["GET"]),
            Route(f"{PREFIX}/incidents", g(self.incidents), methods=["GET"]),
            Route(f"{PREFIX}/incidents/{{id}}", g(self.incident), methods=["GET"]),
            Route(f"{PREFIX}/incidents/{{id}}/report.html", g(self.incident_report),
                  methods=["GET"]),
            Route(f"{PREFIX}/exposure", g(self.exposure), methods=["GET"]),
            Route(f"{PREFIX}/environments", g(self.environments), methods=["GET"]),
            Route(f"{PREFIX}/environments", g(self.record_environment), methods=["POST"]),
            Route(f"{PREFIX}/environments/labels", g(self.environment_labels), methods=["GET"]),
            Route(f"{PREFIX}/decisions", g(self.decisions), methods=["GET"]),
        ]

    # -- verdicts --------------------------------------------------------------------------
    async def verdicts(self, request: Request) -> Response:
        return _json(await _read(
            self.model.verdicts, package=_param(request, "package", 214),
            level=_param(request, "level", 16), since=_param(request, "since", 40),
            **_paging(request)))

    async def verdict(self, request: Request) -> Response:
        doc = await _read(self.model.verdict, request.path_params["key"])
        if doc is None:
            raise ApiError(404, missing_verdict(request.path_params["key"]))
        return _json(doc)

    # -- scans -----------------------------------------------------------------------------
    async def submit_scan(self, request: Request) -> Response:
        media = _media(request)
        if media in ("application/gzip", "application/x-gzip", "application/octet-stream"):
            data = await self._large_body(request, MAX_UPLOAD)
            if not data:
                raise ApiError(422, "the tarball is empty")
            against = _param(request, "against", 300)
            scan = ScanRequest(tarball=data, against=_checked_against(against))
        else:
            body = await _json_body(request)
            target = _string(body, "target", 300)
            assert target is not None
            if (problem := target_problem(target)) is not None:
                raise ApiError(422, f"target: {problem}")
            against = _string(body, "against", 300, required=False)
            if against is not None and against.strip() == target.strip():
                # a release judged against itself says nothing (and the scanner refuses a
                # baseline that resolves to the target's own bytes too)
                raise ApiError(422, "against: the target itself; leave it out to judge the "
                                    "release against its registry history")
            scan = ScanRequest(target=target, against=_checked_against(against))
        try:
            job = self._scans().submit(scan)
        except QueueFull as exc:
            raise ApiError(503, str(exc), {"Retry-After": "5"}) from None
        return ApiJSON({"id": job.id, "status": job.status}, 202,
                            headers={"Location": f"{PREFIX}/scans/{job.id}"})

    async def _large_body(self, request: Request, limit: int) -> bytes:
        """A body of up to ``limit`` bytes, read by at most MAX_READING requests at once; the
        next is refused (503) rather than queued in memory."""
        if not self._reading.acquire(blocking=False):
            raise ApiError(503, "too many uploads at once; try again later", {"Retry-After": "5"})
        try:
            return await _body(request, limit)
        finally:
            self._reading.release()

    async def scan_status(self, request: Request) -> Response:
        ident = request.path_params["id"]
        job = self._scans().get(ident) if len(ident) <= 64 else None
        if job is None:
            raise ApiError(404, "no such scan (finished scans are forgotten after a while; "
                                "their verdicts stay in /api/v1/verdicts)")
        return _json(job.public())

    # -- alerts and incidents --------------------------------------------------------------
    async def alerts(self, request: Request) -> Response:
        return _json(await _read(self.model.alerts, **_paging(request)))

    async def incidents(self, request: Request) -> Response:
        return _json({"items": await _read(self.model.incidents)})

    async def incident(self, request: Request) -> Response:
        doc = await _read(self.model.incident, request.path_params["id"])
        if doc is None:
            raise ApiError(404, "no such incident")
        return _json(doc)

    async def incident_report(self, request: Request) -> Response:
        html = await _read(self.model.incident_html, request.path_params["id"])
        if html is None:
            raise ApiError(404, "no such incident")
        # a standalone report: its own inline style, and no script, form or frame at all
        return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP})

    # -- fleet -----------------------------------------------------------------------------
    async def exposure(self, request: Request) -> Response:
        spec = _param(request, "package", 512)
        if spec is None:
            raise ApiError(422, "package: name the package (name@version or name@range)")
        return _json({"package": spec, "items": await _read(self.model.exposure, spec)})

    async def environments(self, request: Request) -> Response:
        return _json(await _read(self.model.environments, **_paging(request)))

    async def environment_labels(self, request: Request) -> Response:
        """Environments as the overview counts them: one per label, with its sources."""
        return _json(await _read(self.model.environment_labels, **_paging(request)))

    async def record_environment(self, request: Request) -> Response:
        if not self._reading.acquire(blocking=False):
            raise ApiError(503, "too many uploads at once; try again later", {"Retry-After": "5"})
        try:
            body = await _json_body(request)
        finally:
            self._reading.release()
        label = _string(body, "label", MAX_LABEL)
        assert label is not None
        if "document" in body:
            if not isinstance(body["document"], dict):
                raise ApiError(422, "document: a chainwatch.inventory/1 JSON object")
            filename = "inventory.json"
            try:
                data = json.dumps(body["document"]).encode("utf-8", "surrogatepass")
            except (RecursionError, ValueError):
                raise ApiError(422, "document: a chainwatch.inventory/1 JSON object") from None
        else:
            filename = _string(body, "filename", MAX_FILENAME) or ""
            if "/" in filename or "\\" in filename or filename in (".", ".."):
                raise ApiError(422, "filename: a file name, not a path")
            content = _string(body, "content", MAX_JSON)
            assert content is not None
            data = content.encode("utf-8", "surrogatepass")
        from chainwatch.errors import ChainwatchError, one_line

        try:
            count = await run_in_threadpool(self._record_upload, label, filename, data)
        except RecursionError:
            raise ApiError(422, "content: nested too deeply to be a lockfile") from None
        except UnicodeError:
            raise ApiError(422, "content: not valid UTF-8 text") from None
        except (ChainwatchError, ValueError) as exc:
            raise ApiError(422, one_line(exc)) from None
        return ApiJSON({"label": label, "packages": count}, 201)

    async def decisions(self, request: Request) -> Response:
        return _json(await _read(self.model.decisions, action=_param(request, "action", 16),
                                 **_paging(request)))


def _checked_against(against: str | None) -> str | None:
    if against is None or against.lower() == "none":
        return against
    if (problem := target_problem(against)) is not None:
        raise ApiError(422, f"against: {problem}")
    return against


REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
              "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


# -- OpenAPI -------------------------------------------------------------------------------------
def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, description: str, schema: dict[str, Any] | None = None,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def _ok(description: str, schema: dict[str, Any], media: str = "application/json",
        status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {media: {"schema": schema}}},
            "4XX": {"description": "an error", "content": {"application/json": {
                "schema": _ref("Error")}}}}


_PAGING = [_query("limit", f"page size, 1 to {MAX_LIMIT} (default 50)",
                  {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
           _query("cursor", "next_cursor of the previous page")]
_OBJECT: dict[str, Any] = {"type": "object"}


def _page(item: str) -> dict[str, Any]:
    return {"type": "object", "properties": {
        "items": {"type": "array", "items": _ref(item)},
        "next_cursor": {"type": ["string", "null"]}}}


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route (tests check that none is missing)."""
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "liveness (no token needed)", "security": [],
                             "responses": _ok("ok", {"type": "object", "properties": {
                                 "status": {"const": "ok"}}})}},
        "/openapi.json": {"get": {"summary": "this description", "security": [],
                                  "responses": _ok("OpenAPI 3.1", _OBJECT)}},
        f"{PREFIX}/verdicts": {"get": {
            "summary": "scan summaries, newest first",
            "parameters": [_query("package", "an npm package name"),
                           _query("level", "benign, suspicious or malicious",
                                  {"enum": ["benign", "suspicious", "malicious"]}),
                           _query("since", "ISO 8601 date or time (UTC when no offset)"),
                           *_PAGING],
            "responses": _ok("a page of verdicts", _page("Verdict"))}},
        f"{PREFIX}/verdicts/{{key}}": {"get": {
            "summary": "the full chainwatch.scan/1 document stored under a key (the tarball's "
                       "integrity, or name@version when the registry gave none); URL-encode it",
            "parameters": [_path("key", "the verdict memory key")],
            "responses": _ok("chainwatch.scan/1", _OBJECT)}},
        f"{PREFIX}/scans": {"post": {
            "summary": "queue a scan of a registry target or of a gzip tarball",
            "parameters": [_query("against", "with a tarball body: the baseline target, or "
                                             "'none'")],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object", "required": ["target"],
                                                "properties": {
                                                    "target": {"type": "string",
                                                               "description": "name@version"},
                                                    "against": {"type": "string"}}}},
                "application/gzip": {"schema": {"type": "string", "format": "binary",
                                                "maxLength": MAX_UPLOAD}}}},
            "responses": _ok("queued", {"type": "object", "properties": {
                "id": {"type": "string"}, "status": {"type": "string"}}}, status="202")}},
        f"{PREFIX}/scans/{{id}}": {"get": {
            "summary": "a scan's status (queued, running, done, failed), then its document",
            "parameters": [_path("id", "the id POST /api/v1/scans returned")],
            "responses": _ok("the job", _ref("ScanJob"))}},
        f"{PREFIX}/alerts": {"get": {
            "summary": "the watcher's alerts, newest first, with delivery status per sink",
            "parameters": _PAGING, "responses": _ok("a page of alerts", _page("Alert"))}},
        f"{PREFIX}/incidents": {"get": {
            "summary": "flagged releases grouped into incidents",
            "responses": _ok("incidents", {"type": "object", "properties": {
                "items": {"type": "array", "items": _ref("Incident")}}})}},
        f"{PREFIX}/incidents/{{id}}": {"get": {
            "summary": "the incident's chainwatch.brief/1 document",
            "parameters": [_path("id", "an incident id")],
            "responses": _ok("chainwatch.brief/1", _OBJECT)}},
        f"{PREFIX}/incidents/{{id}}/report.html": {"get": {
            "summary": "the incident's brief as a standalone HTML report",
            "parameters": [_path("id", "an incident id")],
            "responses": _ok("HTML", {"type": "string"}, "text/html")}},
        f"{PREFIX}/exposure": {"get": {
            "summary": "environments that hold a version or range, with path and first/last seen",
            "parameters": [_query("package", "name@version or name@range", required=True)],
            "responses": _ok("sightings", {"type": "object", "properties": {
                "package": {"type": "string"},
                "items": {"type": "array", "items": _ref("Exposure")}}})}},
        f"{PREFIX}/environments": {
            "get": {"summary": "every recording, newest first: one per source (lockfile, "
                               "node_modules) of a label, each time it was recorded",
                    "parameters": _PAGING,
                    "responses": _ok("a page of recordings", _page("Environment"))},
            "post": {"summary": "record an environment: a lockfile's text with its file name, "
                                "or a chainwatch.inventory/1 document",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"type": "object", "required": ["label"], "properties": {
                             "label": {"type": "string", "maxLength": MAX_LABEL},
                             "filename": {"type": "string", "maxLength": MAX_FILENAME},
                             "content": {"type": "string"},
                             "document": _OBJECT}}}}},
                     "responses": _ok("recorded", {"type": "object", "properties": {
                         "label": {"type": "string"}, "packages": {"type": "integer"}}},
                         status="201")}},
        f"{PREFIX}/environments/labels": {"get": {
            "summary": "environments (labels, as the overview, exposure and briefs count them), "
                       "most recently recorded first, each with its sources",
            "parameters": _PAGING,
            "responses": _ok("a page of environments", _page("EnvironmentLabel"))}},
        f"{PREFIX}/decisions": {"get": {
            "summary": "what check and the proxy blocked or warned, newest first",
            "parameters": [_query("action", "block, warn or allow",
                                  {"enum": ["block", "warn", "allow"]}), *_PAGING],
            "responses": _ok("a page of decisions", _page("Decision"))}},
    }
    for path, ops in paths.items():
        for op in ops.values():
            if path.startswith(PREFIX):
                op["security"] = secured
    return {
        "openapi": "3.1.0",
        "info": {"title": "chainwatch serve", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
    }


def _schemas() -> dict[str, Any]:
    from dataclasses import fields

    from chainwatch.serve import queries

    def of(cls: type) -> dict[str, Any]:
        return {"type": "object", "properties": {f.name: {} for f in fields(cls)}}

    return {
        "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
        "Verdict": of(queries.VerdictRow), "Alert": of(queries.AlertRow),
        "Incident": of(queries.IncidentRow), "Exposure": of(queries.ExposureRow),
        "Environment": of(queries.EnvironmentRow),
        "EnvironmentLabel": of(queries.LabelRow), "Decision": of(queries.DecisionRow),
        "ScanJob": {"type": "object", "properties": {
            "id": {"type": "string"}, "status": {"enum": ["queued", "running", "done", "failed"]},
            "target": {"type": "string"}, "against": {"type": ["string", "null"]},
            "verdict_key": {"type": "string"}, "error": {"type": "string"},
            "note": {"type": "string"},
            "document": _OBJECT}},
    }
