"""The proxy in-process (httpx ASGI transport) in front of a mock upstream registry."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from chainwatch.gate.check import Checker
from chainwatch.gate.policy import Policy
from chainwatch.gate.proxy import ABBREVIATED, Proxy
from chainwatch.intel import BuiltinKnownBad

NOW = datetime.now(UTC)
UP = "https://upstream.test.invalid/"


def packument(name: str) -> dict[str, Any]:
    base = name.rsplit("/", 1)[-1]
    versions = {"4.4.1": "2025-01-01T00:00:00Z", "4.4.2": "2025-09-08T13:00:00Z",
                "4.5.0": (NOW - timedelta(hours=1)).isoformat()}
    return {"name": name, "dist-tags": {"latest": "4.5.0"},
            "time": {"modified": NOW.isoformat(), **versions},
            "versions": {v: {"name": name, "version": v, "readme": "long text",
                             "dist": {"tarball": f"{UP}{name}/-/{base}-{v}.tgz",
                                      "integrity": "sha512-x"}} for v in versions}}


def upstream(request: httpx.Request) -> httpx.Response:
    path = request.url.raw_path.decode()
    if path.endswith(".tgz"):
        return httpx.Response(200, content=b"TARBALL" + request.headers.get("authorization", "").encode())
    if "missing" in path:
        return httpx.Response(404, json={"error": "Not found"})
    name = path.lstrip("/").replace("%2f", "/").replace("%2F", "/")
    return httpx.Response(200, json=packument(name))


def call(method: str, path: str, **kw: Any) -> httpx.Response:
    proxy = Proxy(UP, Checker(Policy(), None, BuiltinKnownBad()),
                  transport=httpx.MockTransport(upstream))

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy.app),
                                     base_url="http://proxy.test") as client:
            return await client.request(method, path, **kw)

    return asyncio.run(go())


def test_blocked_and_too_young_versions_are_hidden_and_tags_move() -> None:
    r = call("GET", "/debug")
    doc = r.json()
    assert set(doc["versions"]) == {"4.4.1"}  # 4.4.2 known-bad, 4.5.0 an hour old
    assert doc["dist-tags"]["latest"] == "4.4.1"
    assert doc["versions"]["4.4.1"]["dist"]["tarball"] == "http://proxy.test/debug/-/debug-4.4.1.tgz"


def test_abbreviated_packument_and_scoped_names() -> None:
    r = call("GET", "/@scope%2fdebug", headers={"Accept": ABBREVIATED})
    assert r.headers["content-type"].startswith(ABBREVIATED)
    doc = r.json()
    assert "readme" not in doc["versions"]["4.4.1"] and doc["name"] == "@scope/debug"


def test_blocked_tarball_is_refused_with_the_rule() -> None:
    r = call("GET", "/debug/-/debug-4.4.2.tgz")
    assert r.status_code == 403 and r.json()["rule"] == "known-bad"
    young = call("GET", "/debug/-/debug-4.5.0.tgz")
    assert young.status_code == 403 and young.json()["rule"] == "min-age"


def test_allowed_tarball_streams_with_the_clients_auth() -> None:
    r = call("GET", "/debug/-/debug-4.4.1.tgz", headers={"Authorization": "Bearer t0k"})
    assert r.status_code == 200 and r.content == b"TARBALLBearer t0k"


def test_errors_and_odd_paths() -> None:
    assert call("GET", "/missing-pkg").status_code == 404
    assert call("GET", "/..%2f..%2fetc%2fpasswd").status_code == 400
    assert call("GET", "/-/chainwatch/health").json()["status"] == "ok"


def test_upstream_down_is_502() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    proxy = Proxy(UP, Checker(Policy(), None, BuiltinKnownBad()), transport=httpx.MockTransport(down))

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy.app),
                                     base_url="http://proxy.test") as client:
            return await client.get("/debug")

    r = asyncio.run(go())
    assert r.status_code == 502 and "unreachable" in r.json()["error"]
    assert json.dumps(r.json())
