"""The filtering registry proxy: an npm-compatible registry in front of the real one.

Packuments are served (full, or abbreviated when the client asks for
``application/vnd.npm.install-v1+json``) with blocked versions removed, ``dist-tags`` moved to
the newest allowed version and tarball URLs pointing back at the proxy; a blocked tarball is
refused with 403 and a JSON error naming the rule. The client's Authorization header is passed
upstream. Decisions use the same policy and rules as ``chainwatch check``, are computed on every
request (so a cooled-down version appears by itself), and are logged and listed at
``/-/chainwatch/decisions``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from chainwatch.gate.check import Checker
from chainwatch.versions import parse, sort_versions

log = logging.getLogger("chainwatch.proxy")
ABBREVIATED = "application/vnd.npm.install-v1+json"
_NAME = re.compile(r"^(?:@[a-z0-9~][a-z0-9._~-]*/)?[a-z0-9~][a-z0-9._~-]*$")
_CORGI_FIELDS = ("name", "version", "dependencies", "optionalDependencies", "devDependencies",
                 "bundleDependencies", "bundledDependencies", "peerDependencies",
                 "peerDependenciesMeta", "bin", "directories", "dist", "engines",
                 "_hasShrinkwrap", "hasInstallScript", "cpu", "os", "deprecated", "funding",
                 "libc", "license")
MAX_PACKUMENT = 128 * 1024 * 1024


def abbreviate(doc: dict[str, Any]) -> dict[str, Any]:
    """The abbreviated ("corgi") form npm asks for at install time."""
    times = doc.get("time") or {}
    return {"name": doc.get("name"), "modified": times.get("modified"),
            "dist-tags": doc.get("dist-tags") or {},
            "versions": {v: {k: d[k] for k in _CORGI_FIELDS if k in d}
                         for v, d in (doc.get("versions") or {}).items()}}


def package_from_path(raw_path: str) -> str | None:
    """``/@scope%2fname``, ``/@scope/name`` or ``/name`` → the package name, if valid."""
    name = unquote(raw_path.lstrip("/"))
    return name if _NAME.match(name) else None


class Proxy:
    def __init__(self, upstream: str, checker: Checker, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.upstream = upstream.rstrip("/") + "/"
        self.checker = checker
        self.decisions: deque[dict[str, Any]] = deque(maxlen=1000)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0),
                                      transport=transport, follow_redirects=True)
        self.app = Starlette(routes=[
            Route("/-/chainwatch/health", self.health),
            Route("/-/chainwatch/decisions", self.list_decisions),
            Route("/{path:path}", self.route, methods=["GET", "HEAD"]),
        ], lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await self.http.aclose()

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "upstream": self.upstream,
                             "decisions": len(self.decisions)})

    async def list_decisions(self, request: Request) -> Response:
        return JSONResponse({"decisions": list(self.decisions)})

    def _auth(self, request: Request) -> dict[str, str]:
        auth = request.headers.get("authorization")
        return {"Authorization": auth} if auth else {}

    async def _upstream_get(self, path: str, request: Request,
                            accept: str = "application/json") -> httpx.Response | Response:
        try:
            return await self.http.get(self.upstream + path.lstrip("/"),
                                       headers={"Accept": accept, **self._auth(request)})
        except httpx.TimeoutException as exc:
            return JSONResponse({"error": f"upstream timed out: {exc}"}, status_code=504)
        except httpx.TransportError as exc:
            return JSONResponse({"error": f"upstream unreachable: {exc}"}, status_code=502)

    async def route(self, request: Request) -> Response:
        raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        if "/-/" in raw:
            name_part, _, file = raw.lstrip("/").partition("/-/")
            name = package_from_path(name_part)
            if name and file.endswith(".tgz") and "/" not in file:
                return await self.tarball(request, name, file)
            return JSONResponse({"error": "not served by the chainwatch proxy"}, status_code=404)
        name = package_from_path(raw)
        if name is None:
            return JSONResponse({"error": "not a package name"}, status_code=400)
        return await self.packument(request, name)

    async def _full(self, request: Request, name: str) -> dict[str, Any] | Response:
        got = await self._upstream_get(quote(name, safe="@"), request)
        if isinstance(got, Response):
            return got
        if got.status_code != 200:
            return Response(got.content, status_code=got.status_code,
                            media_type=got.headers.get("content-type"))
        if len(got.content) > MAX_PACKUMENT:
            return JSONResponse({"error": "upstream packument too large"}, status_code=502)
        try:
            doc = json.loads(got.content)
        except ValueError:
            return JSONResponse({"error": "upstream sent a packument that is not JSON"},
                                status_code=502)
        if not isinstance(doc, dict) or not isinstance(doc.get("versions", {}), dict):
            return JSONResponse({"error": "upstream sent a malformed packument"}, status_code=502)
        return doc

    def _blocked(self, name: str, doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
        """version -> (rule, reason) for every version the policy blocks."""
        out: dict[str, tuple[str, str]] = {}
        for version in doc.get("versions") or {}:
            for action, rule, reason in self.checker.decide(name, version, doc):
                if action == "block":
                    out[version] = (rule, reason)
                    break
        return out

    def _record(self, name: str, version: str | None, action: str, rule: str, reason: str) -> None:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "package": name,
                 "version": version, "action": action, "rule": rule, "reason": reason}
        self.decisions.append(entry)
        log.info("%s %s@%s %s: %s", action, name, version, rule, reason)

    async def packument(self, request: Request, name: str) -> Response:
        doc = await self._full(request, name)
        if isinstance(doc, Response):
            return doc
        blocked = self._blocked(name, doc)
        for version, (rule, reason) in blocked.items():
            self._record(name, version, "hidden", rule, reason)
            doc["versions"].pop(version, None)
            (doc.get("time") or {}).pop(version, None)
        allowed = [v for v in reversed(sort_versions(doc["versions"]))
                   if (p := parse(v)) is not None and not p.prerelease]
        tags = doc.get("dist-tags") or {}
        for tag, version in list(tags.items()):
            if version in blocked:
                if allowed:
                    tags[tag] = allowed[0]
                else:
                    del tags[tag]
        base = str(request.base_url)
        for data in doc["versions"].values():
            dist = data.get("dist") if isinstance(data, dict) else None
            if isinstance(dist, dict) and isinstance(dist.get("tarball"), str):
                tail = dist["tarball"].split("/-/", 1)
                if len(tail) == 2:
                    dist["tarball"] = f"{base}{quote(name, safe='@/')}/-/{tail[1]}"
        wants_corgi = ABBREVIATED in request.headers.get("accept", "")
        body = abbreviate(doc) if wants_corgi else doc
        return Response(json.dumps(body), media_type=ABBREVIATED if wants_corgi
                        else "application/json")

    async def tarball(self, request: Request, name: str, file: str) -> Response:
        base = name.rsplit("/", 1)[-1]
        version = file[len(base) + 1 : -4] if file.startswith(f"{base}-") else None
        doc = await self._full(request, name)
        if isinstance(doc, Response):
            return doc
        if version is None or version not in (doc.get("versions") or {}):
            return JSONResponse({"error": f"unknown tarball {file}"}, status_code=404)
        for action, rule, reason in self.checker.decide(name, version, doc):
            if action == "block":
                self._record(name, version, "refused", rule, reason)
                return JSONResponse({"error": f"chainwatch blocked {name}@{version}: {rule}: "
                                              f"{reason}", "rule": rule}, status_code=403)
        url = doc["versions"][version].get("dist", {}).get("tarball") or (
            f"{self.upstream}{quote(name, safe='@/')}/-/{file}")
        try:
            upstream = await self.http.send(self.http.build_request(
                "GET", url, headers=self._auth(request)), stream=True)
        except httpx.TimeoutException as exc:
            return JSONResponse({"error": f"upstream timed out: {exc}"}, status_code=504)
        except httpx.TransportError as exc:
            return JSONResponse({"error": f"upstream unreachable: {exc}"}, status_code=502)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_bytes():
                    yield chunk
            finally:
                await upstream.aclose()

        return StreamingResponse(body(), status_code=upstream.status_code,
                                 media_type="application/octet-stream")
