"""Parallel tarball downloads through the proxy must not queue behind DNS (issue 11).

``npm install`` fetches tarballs a dozen at a time. The proxy asked DNS twice per tarball (the
egress check, then the connection), so a burst of downloads was a burst of lookups; a resolver
that drops a query in such a burst answers it only after its retransmission timeout (glibc: 5 s),
and half the downloads took 5 s. These tests run the real ASGI app under uvicorn, as
``chainwatch proxy`` does, in front of a loopback upstream reached by name through a resolver
that answers the first question at once and every later one late, like a server dropping
queries in a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from chainwatch.gate.check import Checker
from chainwatch.gate.egress import CachingResolver
from chainwatch.gate.listen import listen_socket
from chainwatch.gate.policy import Policy
from chainwatch.gate.proxy import Proxy
from chainwatch.gate.scanning import ScanGate
from chainwatch.intel import BuiltinKnownBad
from chainwatch.intel.store import CombinedKnownBad, KnownBadStore
from chainwatch.scan import Scanner
from chainwatch.verdicts import VerdictStore
from tests.helpers import make_tgz, manifest
from tests.hostile.fake_registry import sri

HOST = "upstream.test.invalid"
PACKAGES = [f"par-{i}" for i in range(12)]
#: A dropped query answered by the resolver's retry, shortened from glibc's 5 s.
LATE = 3.0
OLD = "2024-01-02T00:00:00.000Z"


class DroppingDns:
    """The first lookup is answered at once, every later one after ``LATE`` seconds."""

    def __init__(self) -> None:
        self.asked = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        assert host == HOST
        self.asked += 1
        if self.asked > 1:
            await asyncio.sleep(LATE)
        return ["127.0.0.1"]


@pytest.fixture
def upstream() -> Iterator[int]:
    """A loopback registry: a packument and a real tarball for each of PACKAGES."""
    blobs: dict[str, bytes] = {}
    docs: dict[str, bytes] = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    for name in PACKAGES:
        blob = make_tgz({"package.json": manifest(name, "1.0.0"), "index.js": "module.exports = 1;\n"})
        blobs[f"/{name}/-/{name}-1.0.0.tgz"] = blob
        docs[f"/{name}"] = json.dumps({
            "name": name, "dist-tags": {"latest": "1.0.0"},
            "time": {"created": OLD, "modified": OLD, "1.0.0": OLD},
            "versions": {"1.0.0": {"name": name, "version": "1.0.0", "dist": {
                "tarball": f"http://{HOST}:{port}/{name}/-/{name}-1.0.0.tgz",
                "integrity": sri(blob)}}}}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = blobs.get(self.path) or docs.get(self.path)
            self.send_response(200 if body is not None else 404)
            body = body if body is not None else b"{}"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_a: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def served(proxy: Proxy) -> Iterator[str]:
    """``proxy.app`` under uvicorn on a loopback socket made as ``chainwatch proxy`` makes it."""
    sock = listen_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(proxy.app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def make_proxy(port: int, dns: DroppingDns, tmp_path: Path) -> Proxy:
    """The proxy as the CLI builds it: policy, known-bad and verdict databases on SQLite."""
    db = f"sqlite:///{tmp_path / 'chainwatch.db'}"
    gate = ScanGate(Scanner(None, known_bad=CombinedKnownBad(), workers=1), VerdictStore(db),
                    Policy().scan_window)
    checker = Checker(Policy(), None, CombinedKnownBad(KnownBadStore(db), BuiltinKnownBad()),
                      scans=gate)
    return Proxy(f"http://{HOST}:{port}/", checker, resolver=dns)


async def timed_gets(urls: list[str]) -> list[tuple[int, float]]:
    async with httpx.AsyncClient(timeout=60,
                                 limits=httpx.Limits(max_connections=len(urls))) as client:
        async def one(url: str) -> tuple[int, float]:
            started = time.perf_counter()
            response = await client.get(url)
            return response.status_code, time.perf_counter() - started

        return await asyncio.gather(*(one(u) for u in urls))


def test_parallel_tarball_downloads_do_not_wait_for_each_others_dns(
        upstream: int, tmp_path: Path) -> None:
    dns = DroppingDns()
    proxy = make_proxy(upstream, dns, tmp_path)
    with served(proxy) as base:
        # npm reads the packuments first (one by one here, so the DNS is asked once)
        with httpx.Client(timeout=30) as client:
            for name in PACKAGES:
                assert client.get(base + name).status_code == 200
        single = asyncio.run(timed_gets([base + "par-0/-/par-0-1.0.0.tgz"]))[0][1]
        answers = asyncio.run(timed_gets(
            [f"{base}{n}/-/{n}-1.0.0.tgz" for n in PACKAGES]))
    assert [status for status, _ in answers] == [200] * len(PACKAGES)
    waited = [round(s, 2) for _, s in answers if s > 2.0]
    assert waited == [], f"{len(waited)} of {len(answers)} waited > 2 s (one alone: {single:.2f} s)"
    assert dns.asked == 1


def test_the_resolver_asks_once_per_host_and_forgets_failures_and_old_answers() -> None:
    answers: dict[str, list[str] | OSError] = {"a.test.invalid": ["192.0.2.1"],
                                               "gone.test.invalid": OSError("no such host"),
                                               "empty.test.invalid": []}
    asked: list[str] = []

    async def inner(host: str, _port: int) -> list[str]:
        asked.append(host)
        await asyncio.sleep(0.05)
        found = answers[host]
        if isinstance(found, OSError):
            raise found
        return found

    async def go() -> None:
        resolver = CachingResolver(inner, ttl=0.3, entries=2, stale=0)
        got = await asyncio.gather(*(resolver("a.test.invalid", 443) for _ in range(20)))
        assert got == [["192.0.2.1"]] * 20 and asked == ["a.test.invalid"]
        got[0].append("169.254.169.254")  # a caller's copy, never the cached answer
        assert await resolver("A.test.invalid.", 443) == ["192.0.2.1"]
        assert asked == ["a.test.invalid"]
        for _ in range(2):  # a failure and an empty answer are asked again next time
            with pytest.raises(OSError):
                await resolver("gone.test.invalid", 443)
            assert await resolver("empty.test.invalid", 443) == []
        assert asked.count("gone.test.invalid") == 2 and asked.count("empty.test.invalid") == 2
        await asyncio.sleep(0.35)  # past the ttl: asked again
        answers["a.test.invalid"] = ["192.0.2.2"]
        assert await resolver("a.test.invalid", 443) == ["192.0.2.2"]
        assert resolver.lookups == len(asked)
        for i in range(5):  # bounded: the oldest hosts go first
            answers[f"h{i}.test.invalid"] = ["192.0.2.3"]
            await resolver(f"h{i}.test.invalid", 443)
        assert len(resolver._known) == 2

    asyncio.run(go())


def test_a_client_hanging_up_does_not_cancel_the_lookup_others_wait_for() -> None:
    asked: list[str] = []

    async def inner(host: str, _port: int) -> list[str]:
        asked.append(host)
        await asyncio.sleep(0.2)
        return ["192.0.2.1"]

    async def go() -> None:
        resolver = CachingResolver(inner)
        first = asyncio.ensure_future(resolver("a.test.invalid", 443))
        second = asyncio.ensure_future(resolver("a.test.invalid", 443))
        await asyncio.sleep(0.05)
        first.cancel()
        assert await second == ["192.0.2.1"]
        assert asked == ["a.test.invalid"]

    asyncio.run(go())


def test_an_expired_answer_is_renewed_in_the_background_never_making_anyone_wait() -> None:
    answers = [["192.0.2.1"], ["192.0.2.2"]]
    asked: list[float] = []

    async def inner(host: str, _port: int) -> list[str]:
        asked.append(time.monotonic())
        if len(asked) > 1:
            await asyncio.sleep(LATE)  # the renewal's question is dropped and retried
        return answers[len(asked) - 1]

    async def go() -> None:
        resolver = CachingResolver(inner, ttl=0.1, stale=60)
        assert await resolver("a.test.invalid", 443) == ["192.0.2.1"]
        await asyncio.sleep(0.15)
        started = time.monotonic()
        got = await asyncio.gather(*(resolver("a.test.invalid", 443) for _ in range(12)))
        assert time.monotonic() - started < 1.0 and got == [["192.0.2.1"]] * 12
        assert len(asked) == 2  # one renewal, not one per caller
        await asyncio.sleep(LATE + 0.2)
        assert await resolver("a.test.invalid", 443) == ["192.0.2.2"]

    asyncio.run(go())


def test_past_the_stale_window_callers_wait_for_a_fresh_answer() -> None:
    answers = iter([["192.0.2.1"], ["192.0.2.2"]])

    async def inner(host: str, _port: int) -> list[str]:
        return next(answers)

    async def go() -> None:
        resolver = CachingResolver(inner, ttl=0.05, stale=0.05)
        assert await resolver("a.test.invalid", 443) == ["192.0.2.1"]
        await asyncio.sleep(0.15)
        assert await resolver("a.test.invalid", 443) == ["192.0.2.2"]

    asyncio.run(go())
