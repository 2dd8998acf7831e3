"""The proxy's listening socket turns Nagle's algorithm off on every connection it accepts.

Before: ``socket.create_server`` made the socket with protocol 0, so asyncio left Nagle on for
accepted connections; on a kept-alive connection each answer (headers, then body) waited for
the client's delayed ACK, ~50 ms a request (a warm ``npm install`` 2.4x slower through the proxy
than direct, ``bench/proxy.py --only install``).
"""

from __future__ import annotations

import asyncio
import socket

from chainwatch.gate.listen import listen_socket


async def _accepted_nodelay(sock: socket.socket) -> int:
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = writer.get_extra_info("socket")
        seen.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accept, sock=sock)
    async with server:
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()


def test_accepted_connections_have_nodelay() -> None:
    sock = listen_socket("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    assert asyncio.run(_accepted_nodelay(sock)) != 0


def test_what_create_server_did_left_nagle_on() -> None:
    # the oracle for the test above: the old way, through the same asyncio path
    sock = socket.create_server(("127.0.0.1", 0))
    assert asyncio.run(_accepted_nodelay(sock)) == 0


def test_a_busy_port_is_an_oserror() -> None:
    first = listen_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        try:
            listen_socket("127.0.0.1", port)
        except OSError:
            pass
        else:
            raise AssertionError("bound a port already in use")
    finally:
        first.close()
