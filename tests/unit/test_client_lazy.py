"""The registry client makes its HTTP client on the first request, not when it is made."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from chainwatch.registry import NpmConfig, RegistryClient

DOC = {"name": "left-padder", "versions": {"1.0.0": {"version": "1.0.0"}}}


def client(tmp_path: Path, seen: list[str]) -> RegistryClient:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=json.dumps(DOC).encode())

    return RegistryClient(NpmConfig(registry="https://registry.example.invalid/"), tmp_path,
                          retries=0, transport=httpx.MockTransport(answer))


def test_no_http_client_until_the_first_request(tmp_path: Path) -> None:
    seen: list[str] = []
    with client(tmp_path, seen) as registry:
        assert registry._client is None
        assert registry.packument("left-padder") == DOC
        assert registry._client is not None and seen == [
            "https://registry.example.invalid/left-padder"]
    assert registry._client.is_closed


def test_a_closed_client_refuses_requests_whether_or_not_it_had_connected(tmp_path: Path) -> None:
    for used in (True, False):
        seen: list[str] = []
        registry = client(tmp_path / str(used), seen)
        if used:
            registry.packument("left-padder")
        registry.close()
        with pytest.raises(RuntimeError, match="closed"):
            registry.packument("another-name")
        assert len(seen) == int(used)
