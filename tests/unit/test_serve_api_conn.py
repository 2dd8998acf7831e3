"""Real sockets against a real server on loopback: half-sent requests cannot hold it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from chainwatch.serve.conn import guarded_protocol

HALF = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # the blank line never comes


async def _ok(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _serve(limit: int, timeout: float, per_client: int) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    config = uvicorn.Config(Starlette(routes=[Route("/healthz", _ok)]), log_level="critical",
                            limit_concurrency=limit, timeout_keep_alive=5,
                            http=guarded_protocol(timeout, per_client))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _healthz(port: int, source: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        head = s.recv(64)
    return int(head.split()[1]) if head else 0


def _closed(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True




def test_unfinished_headers_are_timed_out_and_the_server_recovers() -> None:
    for port in _serve(limit=6, timeout=1.0, per_client=100):
        half = []
        for _ in range(6):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(HALF)
            half.append(s)
        time.sleep(0.2)
        assert _healthz(port) == 503  # the limit is used up by half-sent requests
        assert all(_closed(s, 3) for s in half)  # each closed after its deadline
        for s in half:
            s.close()
        time.sleep(0.1)
        assert _healthz(port) == 200


def test_one_client_cannot_hold_every_connection() -> None:
    for port in _serve(limit=8, timeout=30.0, per_client=4):
        half = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(HALF)
            half.append(s)
        extra = socket.create_connection(("127.0.0.1", port))
        assert _closed(extra, 3)  # the fifth from the same address is closed at once
        extra.close()
        assert not _closed(half[0], 0.3)  # the held ones wait for their deadline
        assert _healthz(port, source="127.0.0.2") == 200  # another client is served
        for s in half:
            s.close()
        time.sleep(0.2)
        assert _healthz(port) == 200  # the count goes down as connections close
