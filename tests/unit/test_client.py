"""The registry client against an in-process fake registry (httpx.MockTransport)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from chainwatch.errors import NotFoundError, OfflineMissError, RegistryError
from chainwatch.registry import NpmConfig, RegistryClient
from tests.helpers import make_tgz, manifest

REG = "https://registry.test.invalid/"
TGZ = make_tgz({"package.json": manifest("demo", "1.0.0"), "index.js": "module.exports=1"})
SRI = "sha512-" + base64.b64encode(hashlib.sha512(TGZ).digest()).decode()
PACKUMENT = {"name": "demo", "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": {
    "name": "demo", "version": "1.0.0",
    "dist": {"tarball": REG + "demo/-/demo-1.0.0.tgz", "integrity": SRI}}}}


def client(tmp_path: Path, handler: Callable[[httpx.Request], httpx.Response],
           **kw: object) -> RegistryClient:
    return RegistryClient(NpmConfig(registry=REG), tmp_path, transport=httpx.MockTransport(handler),
                          backoff=0.0, **kw)  # type: ignore[arg-type]


def test_packument_is_cached_and_revalidated_with_etag(tmp_path: Path) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("If-None-Match"))
        if request.headers.get("If-None-Match") == '"v1"':
            return httpx.Response(304)
        return httpx.Response(200, json=PACKUMENT, headers={"ETag": '"v1"'})

    with client(tmp_path, handler) as c:
        assert c.packument("demo")["name"] == "demo"
        assert c.packument("demo")["name"] == "demo"
    assert seen == [None, '"v1"']
    with client(tmp_path, handler, offline=True) as c:
        assert c.packument("demo")["name"] == "demo"
    assert len(seen) == 2


def test_packument_is_revalidated_with_last_modified_without_an_etag(tmp_path: Path) -> None:
    stamp = "Wed, 08 Sep 2025 13:16:00 GMT"
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("If-Modified-Since"))
        if request.headers.get("If-Modified-Since") == stamp:
            return httpx.Response(304)
        return httpx.Response(200, json=PACKUMENT, headers={"Last-Modified": stamp})

    with client(tmp_path, handler) as c:
        assert c.packument("demo")["name"] == "demo"
        assert c.packument("demo")["name"] == "demo"
    assert seen == [None, stamp]


def test_scoped_names_are_escaped_like_npm(tmp_path: Path) -> None:
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, json={**PACKUMENT, "name": "@s/demo"})

    with client(tmp_path, handler) as c:
        c.packument("@s/demo")
    assert urls == [REG + "@s%2Fdemo"] or urls == [REG + "@s%2fdemo"]


def test_missing_package_is_not_found(tmp_path: Path) -> None:
    with client(tmp_path, lambda r: httpx.Response(404, json={"error": "Not found"})) as c:
        with pytest.raises(NotFoundError):
            c.packument("nope")


def test_server_errors_are_retried_then_reported(tmp_path: Path) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503)

    with client(tmp_path, handler, retries=2) as c, pytest.raises(RegistryError):
        c.packument("demo")
    assert len(calls) == 3


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "0"})
        return httpx.Response(200, json=PACKUMENT)

    with client(tmp_path, handler) as c:
        assert c.packument("demo")["name"] == "demo"
    assert len(calls) == 2


def test_network_failure_is_a_registry_error(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with client(tmp_path, handler, retries=1) as c, pytest.raises(RegistryError):
        c.packument("demo")


def test_tarball_integrity_checked_and_cached(tmp_path: Path) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, content=TGZ)

    url = REG + "demo/-/demo-1.0.0.tgz"
    with client(tmp_path, handler) as c:
        assert c.tarball(url, SRI, None).integrity_error is None
        assert c.tarball(url, SRI, None).data == TGZ
    assert len(calls) == 1
    with client(tmp_path, handler, offline=True) as c:
        assert c.tarball(url, SRI, None).data == TGZ


def test_tampered_tarball_is_reported_not_cached(tmp_path: Path) -> None:
    url = REG + "demo/-/demo-1.0.0.tgz"
    with client(tmp_path, lambda r: httpx.Response(200, content=TGZ + b"x")) as c:
        result = c.tarball(url, SRI, None)
    assert result.integrity_error and "sha512" in result.integrity_error
    with client(tmp_path, lambda r: httpx.Response(500), offline=True) as c:
        with pytest.raises(OfflineMissError):
            c.tarball(url, SRI, None)


def test_shasum_fallback(tmp_path: Path) -> None:
    url = REG + "demo/-/demo-1.0.0.tgz"
    sha1 = hashlib.sha1(TGZ).hexdigest()
    with client(tmp_path, lambda r: httpx.Response(200, content=TGZ)) as c:
        assert c.tarball(url, None, sha1).integrity_error is None
        assert c.tarball(url, None, "0" * 40).integrity_error is not None


def test_auth_token_is_sent(tmp_path: Path) -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, content=json.dumps(PACKUMENT))

    cfg = NpmConfig(registry=REG, settings={"//registry.test.invalid/:_authToken": "t0k"})
    with RegistryClient(cfg, tmp_path, transport=httpx.MockTransport(handler)) as c:
        c.packument("demo")
    assert seen == ["Bearer t0k"]
