"""The proxy's listening socket.

Made with ``IPPROTO_TCP`` as its protocol, not 0 as ``socket.create_server`` makes it: asyncio
turns Nagle's algorithm off (``TCP_NODELAY``) only on accepted sockets whose protocol says TCP.
Without it every answer on a kept-alive connection (headers and body are two writes) waited for
the client's delayed ACK: ~40 ms a request, a warm ``npm install`` 2-3x slower through the proxy
than straight from the registry (``bench/proxy.py --only install``).
"""

from __future__ import annotations

import socket


def listen_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A bound, listening TCP socket on ``host:port`` (OSError when it cannot be had)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
